"""The fine-tune panel of the agent editor: train an adapter, watch it learn, judge it, keep it.

Layout and handlers only; every action is one ``FinetuneService`` call. The panel follows the
agent picked in the editor. A run shows the shared job widget (progress bar + Cancel) and a
loss plot that grows while it trains; when it ends, the panel shows held-out perplexity and
the style score before and after, with a few replies of each, and offers Activate or Discard.
The versions table below lists every adapter of the agent with Activate, Roll back and Delete.

Rendering is a set of pure functions of the service's views (tested without a browser); the
settings sliders take their bounds from ``FinetuneSettings`` so the form cannot offer what the
service would refuse.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from agents.finetune.data import UploadedChat
from agents.finetune.schema import AdapterView, DataSummary, FinetuneSettings, RunView
from container import Services
from core.errors import AnimaError, ValidationError
from ui.common import principal_of, show_error
from ui.jobs_widget import job_widget

# Knobs the panel offers (the API takes every FinetuneSettings field).
KNOBS = ("epochs", "learning_rate", "lora_r", "max_seq_len")
VERSION_COLUMNS = ["version", "name", "active", "perplexity", "style", "source", "base model"]


@dataclass
class FinetunePanel:
    """The parts other code (and tests) may wire to."""

    start: gr.Button
    run_id: gr.State


# ----- pure rendering ---------------------------------------------------------------------------
def bounds(name: str) -> tuple[float | None, float | None]:
    """The (min, max) that ``FinetuneSettings`` allows for ``name``."""
    low = high = None
    for rule in FinetuneSettings.model_fields[name].metadata:
        low = getattr(rule, "ge", getattr(rule, "gt", low))
        high = getattr(rule, "le", getattr(rule, "lt", high))
    return low, high


def render_summary(summary: DataSummary) -> str:
    """The data a run would use, and what is missing when it is not enough."""
    src = summary.by_source
    lines = [
        f"**{summary.examples} dialogues** ({src['examples']} example dialogues, "
        f"{src['greetings']} greetings, {src['chats']} from chats), "
        f"{summary.replies} replies by the character: {summary.train} to train on, "
        f"{summary.held_out} held out to evaluate. At least {summary.min_examples} are needed."
    ]
    lines += [f"- {html.escape(note)}" for note in summary.notes]
    return "\n".join(lines)


def loss_frame(run: RunView | None) -> pd.DataFrame:
    points = run.metrics.loss if run else []
    return pd.DataFrame({"step": [p.step for p in points], "loss": [p.loss for p in points]})


def render_report(run: RunView | None) -> str:
    """The run's outcome: before/after scores and sample replies, or where it stands."""
    if run is None:
        return "No fine-tune yet for this agent."
    report = run.metrics.eval
    head = f"**Run v{run.version}** ({run.stage})"
    if run.stage == "failed" and run.job and run.job.error:
        return f"{head}: {html.escape(run.job.error)}"
    if report is None:
        return f"{head}: the evaluation appears here when training ends."

    def style(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    change = 100 * report.perplexity_change
    lines = [
        head,
        "",
        "| held out | base model | with the adapter |",
        "|---|---|---|",
        f"| perplexity (lower is better) | {report.before.perplexity:.2f} | "
        f"{report.after.perplexity:.2f} ({change:+.0f} %) |",
        f"| style score, 0-1 (your own replies: {style(report.style_reference)}) | "
        f"{style(report.before.style)} | {style(report.after.style)} |",
        "",
        "Perplexity: how surprised the model is by your held-out replies. Style: how close "
        "its own replies come to your character's wording (character n-grams).",
    ]
    if report.improved:
        lines.append("\n**The adapter fits your character better.** Activate it to use it.")
    else:
        lines.append("\nThe adapter did not clearly improve on the base model.")
    for sample in report.samples:
        lines += [
            "",
            f"> **{html.escape(sample.prompt)}**",
            f"> - yours: {html.escape(sample.reference)}",
            f"> - base: {html.escape(sample.before)}",
            f"> - adapter: {html.escape(sample.after)}",
        ]
    return "\n".join(lines)


def version_rows(adapters: list[AdapterView]) -> list[list[Any]]:
    rows = []
    for a in adapters:
        ev = a.eval
        ppl = f"{ev.before.perplexity:.1f} → {ev.after.perplexity:.1f}" if ev else ""
        style = (
            f"{ev.before.style:.2f} → {ev.after.style:.2f}"
            if ev and ev.before.style is not None and ev.after.style is not None
            else ""
        )
        base = a.base_model_name if a.compatible else f"{a.base_model_name} (does not fit)"
        rows.append([a.version, a.name, "✓" if a.active else "", ppl, style, a.source, base])
    return rows


# ----- the panel ---------------------------------------------------------------------------------
def build_finetune_panel(services: Services, picker: gr.Dropdown) -> FinetunePanel:
    """Lay out the panel inside the caller's layout; it follows ``picker`` (an agent id)."""
    defaults = FinetuneSettings()
    run_id = gr.State(None)

    gr.Markdown(
        "Train a small LoRA adapter on this character's example dialogues, greetings and "
        "uploaded chats, so replies take on its voice. Runs in the background; you can leave."
    )
    with gr.Row():
        chats = gr.File(
            label="Chats to learn from (SillyTavern .jsonl, or JSONL of messages)",
            file_count="multiple",
            file_types=[".jsonl", ".json", ".txt"],
            elem_id="ft-chats",
            scale=2,
        )
        with gr.Column(scale=1):
            use_examples = gr.Checkbox(True, label="Example dialogues", elem_id="ft-use-examples")
            use_greetings = gr.Checkbox(True, label="Greetings", elem_id="ft-use-greetings")
            check_btn = gr.Button("Check data", size="sm", elem_id="ft-check")
    summary = gr.Markdown("", elem_id="ft-summary")
    with gr.Accordion("Training settings", open=False), gr.Row():
        knobs = {
            "epochs": gr.Slider(
                *_range("epochs", 0.5, 10),
                value=defaults.epochs,
                step=0.5,
                label="Epochs",
                elem_id="ft-epochs",
            ),
            "learning_rate": gr.Number(
                defaults.learning_rate,
                label="Learning rate",
                minimum=bounds("learning_rate")[0],
                maximum=bounds("learning_rate")[1],
                elem_id="ft-lr",
            ),
            "lora_r": gr.Slider(
                *_range("lora_r", 1, 64),
                value=defaults.lora_r,
                step=1,
                label="LoRA rank",
                elem_id="ft-rank",
            ),
            "max_seq_len": gr.Slider(
                *_range("max_seq_len", 32, 2048),
                value=defaults.max_seq_len,
                step=32,
                label="Max tokens per example",
                elem_id="ft-seq-len",
            ),
        }
    start_btn = gr.Button("Start fine-tune", variant="primary", elem_id="ft-start")
    progress = job_widget(services, elem_id="ft-job")
    plot = gr.LinePlot(
        loss_frame(None), x="step", y="loss", title="Training loss", height=220, elem_id="ft-loss"
    )
    plot_timer = gr.Timer(1.0, active=False)
    report = gr.Markdown("", elem_id="ft-report")
    with gr.Row():
        activate_run_btn = gr.Button("Activate this adapter", elem_id="ft-activate-run")
        discard_run_btn = gr.Button("Discard it", variant="stop", elem_id="ft-discard-run")
    status = gr.Markdown("", elem_id="ft-status")
    gr.Markdown("**Adapter versions**")
    versions = gr.Dataframe(
        headers=VERSION_COLUMNS,
        value=[],
        interactive=False,
        wrap=True,
        elem_id="ft-versions",
    )
    with gr.Row():
        version_pick = gr.Dropdown([], label="Version", elem_id="ft-version", scale=2)
        activate_btn = gr.Button("Activate", size="sm", elem_id="ft-activate")
        rollback_btn = gr.Button("Roll back", size="sm", elem_id="ft-rollback")
        delete_btn = gr.Button("Delete", variant="stop", size="sm", elem_id="ft-delete")

    # -- handlers -----------------------------------------------------------------------------
    def options(examples: bool, greetings: bool, *values: Any) -> FinetuneSettings:
        chosen = {k: v for k, v in zip(KNOBS, values, strict=True) if v is not None}
        if "lora_r" in chosen:
            chosen["lora_r"] = int(chosen["lora_r"])
        if "max_seq_len" in chosen:
            chosen["max_seq_len"] = int(chosen["max_seq_len"])
        try:
            return FinetuneSettings(use_examples=examples, use_greetings=greetings, **chosen)
        except Exception as exc:
            raise ValidationError(f"training settings: {exc}") from exc

    def uploads(files: list[str] | None) -> list[UploadedChat]:
        return [UploadedChat(Path(f).name, Path(f).read_bytes()) for f in files or []]

    def versions_of(agent_id: str | None) -> tuple[Any, Any]:
        adapters = services.finetune.list_adapters(agent_id) if agent_id else []
        names = [(f"v{a.version} · {a.name}", a.name) for a in adapters]
        return version_rows(adapters), gr.update(choices=names, value=None)

    def latest(agent_id: str | None) -> RunView | None:
        runs = services.finetune.list_runs(agent_id) if agent_id else []
        return runs[0] if runs else None

    def show_agent(agent_id: str | None) -> list[Any]:
        try:
            run = latest(agent_id)
            rows, picks = versions_of(agent_id)
        except AnimaError as exc:
            return [None, None, loss_frame(None), show_error(exc), [], gr.update(), ""]
        job = run.job.id if run and run.job and not run.job.finished else None
        return [
            run.id if run else None,
            job,
            loss_frame(run),
            render_report(run) if agent_id else "",
            rows,
            picks,
            "",
        ]

    def check(agent_id: str | None, files: Any, examples: bool, greetings: bool, *v: Any) -> str:
        if not agent_id:
            return show_error("pick or save an agent first")
        try:
            found = services.finetune.preview(
                agent_id, uploads(files), options(examples, greetings, *v)
            )
        except AnimaError as exc:
            return show_error(exc)
        return render_summary(found)

    def start(
        agent_id: str | None,
        files: Any,
        examples: bool,
        greetings: bool,
        epochs: float,
        lr: float,
        rank: float,
        seq_len: float,
        request: gr.Request,
    ) -> list:
        if not agent_id:
            return [gr.skip(), gr.skip(), show_error("pick or save an agent first"), gr.skip()]
        try:
            run = services.finetune.start(
                agent_id,
                uploads(files),
                options(examples, greetings, epochs, lr, rank, seq_len),
                principal=principal_of(services, request),
            )
        except AnimaError as exc:
            return [gr.skip(), gr.skip(), show_error(exc), gr.skip()]
        job = run.job.id if run.job else None
        return [run.id, job, render_summary(run.data), gr.Timer(active=True)]

    def tick(agent_id: str | None, current: str | None) -> list[Any]:
        if not agent_id or not current:
            return [loss_frame(None), gr.skip(), gr.Timer(active=False)]
        try:
            run = services.finetune.get_run(agent_id, current)
        except AnimaError:
            return [loss_frame(None), gr.skip(), gr.Timer(active=False)]
        running = run.job is not None and not run.job.finished
        return [loss_frame(run), render_report(run), gr.Timer(active=running)]

    def finished(agent_id: str | None, current: str | None) -> list[Any]:
        frame, text, _ = tick(agent_id, current)
        rows, picks = versions_of(agent_id) if agent_id else ([], gr.update())
        return [frame, text, rows, picks]

    def act(
        action: str,
        agent_id: str | None,
        current: str | None,
        name: str | None,
        request: gr.Request | None,
    ) -> list:
        if not agent_id:
            return [show_error("pick an agent first"), gr.skip(), gr.skip()]
        service = services.finetune
        principal = principal_of(services, request)
        try:
            if action in ("activate-run", "discard-run"):
                run = service.get_run(agent_id, current) if current else None
                if run is None or run.adapter is None:
                    raise ValidationError("this run has no adapter (yet): wait for it to finish")
                name = run.adapter.name
            if action in ("activate", "delete") and not name:
                raise ValidationError("pick a version first")
            if action in ("activate", "activate-run"):
                service.activate(agent_id, str(name), principal=principal)
                message = f"**{name}** is active: the agent's next reply uses it."
            elif action in ("delete", "discard-run"):
                service.delete_adapter(agent_id, str(name), principal=principal)
                message = f"Deleted **{name}**."
            else:
                agent = service.rollback(agent_id, principal=principal)
                now = agent.adapter or "the base model"
                message = f"Rolled back: the agent now uses **{now}**."
        except AnimaError as exc:
            return [show_error(exc), gr.skip(), gr.skip()]
        rows, picks = versions_of(agent_id)
        return [message, rows, picks]

    knob_inputs = [knobs[k] for k in KNOBS]
    data_inputs = [picker, chats, use_examples, use_greetings, *knob_inputs]
    picker.change(
        show_agent,
        inputs=[picker],
        outputs=[run_id, progress.job_id, plot, report, versions, version_pick, summary],
    )
    check_btn.click(check, inputs=data_inputs, outputs=[summary])
    start_btn.click(
        start, inputs=data_inputs, outputs=[run_id, progress.job_id, summary, plot_timer]
    )
    plot_timer.tick(tick, inputs=[picker, run_id], outputs=[plot, report, plot_timer])
    progress.job_id.change(
        lambda job: gr.Timer(active=bool(job)), inputs=[progress.job_id], outputs=[plot_timer]
    )
    progress.finished.change(
        finished, inputs=[picker, run_id], outputs=[plot, report, versions, version_pick]
    )
    act_outputs = [status, versions, version_pick]
    for button, action in (
        (activate_run_btn, "activate-run"),
        (discard_run_btn, "discard-run"),
        (activate_btn, "activate"),
        (rollback_btn, "rollback"),
        (delete_btn, "delete"),
    ):
        button.click(_bind(act, action), inputs=[picker, run_id, version_pick], outputs=act_outputs)
    return FinetunePanel(start=start_btn, run_id=run_id)


def _bind(act: Callable[..., list], action: str) -> Callable[..., list]:
    """``act`` for one button; Gradio passes ``request`` (the browser's session) by its type."""

    def handler(
        agent_id: str | None, current: str | None, name: str | None, request: gr.Request
    ) -> list:
        return act(action, agent_id, current, name, request)

    return handler


def _range(name: str, low: float, high: float) -> tuple[float, float]:
    """Slider range: the schema's bounds, narrowed to what makes sense on a slider."""
    lo, hi = bounds(name)
    return max(low, lo or low), min(high, hi or high)
