"""The fine-tune panel's layout: data to learn from, training settings, the run, the versions.

A run shows the shared job widget (progress bar + Cancel) and a loss plot that grows while it
trains; when it ends, the panel shows held-out perplexity and the style score before and
after, with a few replies of each, and offers Activate or Discard. The versions table lists
every adapter of the agent with Activate, Roll back and Delete. The settings controls come
from ``FinetuneSettings`` (``ui.widgets``), so the form cannot offer what the service refuses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import gradio as gr

from agents.finetune.schema import FinetuneSettings
from core.principal import Principal
from ui import widgets
from ui.context import StudioContext
from ui.jobs.widget import job_widget
from ui.panels.finetune import handlers
from ui.panels.finetune.handlers import KNOBS, VERSION_COLUMNS, loss_frame
from ui.wiring import wire

# Buttons acting on an adapter, and the action each one names.
ACTIONS = {
    "activate_run": "activate-run",
    "discard_run": "discard-run",
    "activate": "activate",
    "rollback": "rollback",
    "delete": "delete",
}


@dataclass
class FinetunePanel:
    """The parts other code (and tests) may wire to."""

    start: gr.Button
    run_id: gr.State


def build_finetune_panel(ctx: StudioContext) -> FinetunePanel:
    """Lay out the panel inside the caller's layout; it follows the selected agent."""
    c: dict[str, Any] = {"run_id": gr.State(None)}
    gr.Markdown(
        "Train a small LoRA adapter on this character's example dialogues, greetings and "
        "uploaded chats, so replies take on its voice. Runs in the background; you can leave."
    )
    _data_row(c)
    _settings(c)
    c["start"] = gr.Button("Start fine-tune", variant="primary", elem_id="ft-start")
    c["progress"] = job_widget(ctx.services, elem_id="ft-job")
    c["plot"] = gr.LinePlot(
        loss_frame(None), x="step", y="loss", title="Training loss", height=220, elem_id="ft-loss"
    )
    c["plot_timer"] = gr.Timer(1.0, active=False)
    c["report"] = gr.Markdown("", elem_id="ft-report")
    with gr.Row():
        c["activate_run"] = gr.Button("Activate this adapter", elem_id="ft-activate-run")
        c["discard_run"] = gr.Button("Discard it", variant="stop", elem_id="ft-discard-run")
    c["status"] = gr.Markdown("", elem_id="ft-status")
    gr.Markdown("**Adapter versions**")
    c["versions"] = gr.Dataframe(
        headers=VERSION_COLUMNS, value=[], interactive=False, wrap=True, elem_id="ft-versions"
    )
    with gr.Row():
        c["version_pick"] = gr.Dropdown([], label="Version", elem_id="ft-version", scale=2)
        c["activate"] = gr.Button("Activate", size="sm", elem_id="ft-activate")
        c["rollback"] = gr.Button("Roll back", size="sm", elem_id="ft-rollback")
        c["delete"] = gr.Button("Delete", variant="stop", size="sm", elem_id="ft-delete")
    _wire(ctx, c)
    return FinetunePanel(start=c["start"], run_id=c["run_id"])


def _data_row(c: dict[str, Any]) -> None:
    with gr.Row():
        c["chats"] = gr.File(
            label="Chats to learn from (SillyTavern .jsonl, or JSONL of messages)",
            file_count="multiple",
            file_types=[".jsonl", ".json", ".txt"],
            elem_id="ft-chats",
            scale=2,
        )
        with gr.Column(scale=1):
            c["use_examples"] = widgets.checkbox(
                FinetuneSettings,
                "use_examples",
                label="Example dialogues",
                elem_id="ft-use-examples",
            )
            c["use_greetings"] = widgets.checkbox(
                FinetuneSettings, "use_greetings", label="Greetings", elem_id="ft-use-greetings"
            )
            c["check"] = gr.Button("Check data", size="sm", elem_id="ft-check")
    c["summary"] = gr.Markdown("", elem_id="ft-summary")


def _settings(c: dict[str, Any]) -> None:
    """The knobs the panel offers (the API takes every ``FinetuneSettings`` field)."""
    model = FinetuneSettings
    with gr.Accordion("Training settings", open=False), gr.Row():
        c["epochs"] = widgets.slider(
            model, "epochs", step=0.5, narrow=(None, 10), label="Epochs", elem_id="ft-epochs"
        )
        c["learning_rate"] = widgets.number(
            model, "learning_rate", label="Learning rate", elem_id="ft-lr"
        )
        c["lora_r"] = widgets.slider(
            model, "lora_r", step=1, narrow=(None, 64), label="LoRA rank", elem_id="ft-rank"
        )
        c["max_seq_len"] = widgets.slider(
            model,
            "max_seq_len",
            step=32,
            narrow=(None, 2048),
            label="Max tokens per example",
            elem_id="ft-seq-len",
        )


def _with_knobs(fn: Any) -> Any:
    """``fn`` with the knob inputs (positional, in ``KNOBS`` order) gathered into a dict.

    It keeps ``fn``'s signature (``functools.wraps``), so wiring still sees that ``fn`` acts for
    the user and hands it the caller."""

    @functools.wraps(fn)
    def call(services: Any, *values: Any, **kw: Any) -> Any:
        fixed, knobs = values[: -len(KNOBS)], values[-len(KNOBS) :]
        return fn(services, *fixed, dict(zip(KNOBS, knobs, strict=True)), **kw)

    return call


def _wire(ctx: StudioContext, c: dict[str, Any]) -> None:
    services, agent, run_id = ctx.services, ctx.selected_agent, c["run_id"]
    job = c["progress"].job_id
    out = {name: c[name] for name in ("plot", "report", "versions", "version_pick", "summary")}
    data = [agent, c["chats"], c["use_examples"], c["use_greetings"], *(c[k] for k in KNOBS)]
    wire(
        agent.change,
        handlers.show_agent,
        services,
        inputs=[agent],
        outputs={"run_id": run_id, "job": job, **out},
    )
    wire(
        c["check"].click,
        _with_knobs(handlers.check),
        services,
        inputs=data,
        outputs={"summary": c["summary"]},
    )
    wire(
        c["start"].click,
        _with_knobs(handlers.start),
        services,
        inputs=data,
        as_user=True,
        outputs={
            "run_id": run_id,
            "job": job,
            "summary": c["summary"],
            "plot_timer": c["plot_timer"],
        },
    )
    plot = {"plot": c["plot"], "report": c["report"]}
    wire(
        c["plot_timer"].tick,
        handlers.tick,
        services,
        inputs=[agent, run_id],
        outputs={**plot, "plot_timer": c["plot_timer"]},
    )
    job.change(lambda j: gr.Timer(active=bool(j)), inputs=[job], outputs=[c["plot_timer"]])
    _wire_versions(ctx, c, plot)


def _acting(action: str) -> Any:
    """``handlers.act`` for one button: the action is fixed, the caller still reaches it."""

    def act(
        services: Any,
        agent_id: str | None,
        current: str | None,
        name: str | None,
        *,
        principal: Principal,
    ) -> Any:
        return handlers.act(services, action, agent_id, current, name, principal=principal)

    return act


def _wire_versions(ctx: StudioContext, c: dict[str, Any], plot: dict[str, Any]) -> None:
    """A finished run lists its adapter; the buttons act on a run's or a listed adapter."""
    services, agent, run_id = ctx.services, ctx.selected_agent, c["run_id"]
    versions = {"versions": c["versions"], "version_pick": c["version_pick"]}
    wire(
        c["progress"].finished.change,
        handlers.finished,
        services,
        inputs=[agent, run_id],
        outputs={**plot, **versions},
    )
    for button, action in ACTIONS.items():
        wire(
            c[button].click,
            _acting(action),
            services,
            inputs=[agent, run_id, c["version_pick"]],
            outputs={"status": c["status"], **versions},
            as_user=True,
        )
