"""The fine-tune panel's handlers and rendering: train an adapter, watch it learn, judge it,
keep it.

Every action is one ``FinetuneService`` call. Rendering is a set of pure functions of the
service's views; handlers return named updates. Both are tested without a browser. The form
sends only the settings the user set: rules between settings (LoRA alpha follows the rank) are
the schema's, not the UI's.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from agents.finetune.data import UploadedChat
from agents.finetune.schema import AdapterView, DataSummary, FinetuneSettings, RunView
from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from ui import widgets
from ui.common import show_error
from ui.wiring import Updates

# Knobs the panel offers (the API takes every FinetuneSettings field).
KNOBS = ("epochs", "learning_rate", "lora_r", "max_seq_len")
VERSION_COLUMNS = ["version", "name", "active", "perplexity", "style", "source", "base model"]


# ----- pure rendering ---------------------------------------------------------------------------
def bounds(name: str) -> tuple[float | None, float | None]:
    """The (min, max) that ``FinetuneSettings`` allows for ``name``."""
    return widgets.bounds(FinetuneSettings, name)


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


# ----- handlers ---------------------------------------------------------------------------------
NO_AGENT = "pick or save an agent first"


def options(examples: bool, greetings: bool, knobs: dict[str, Any]) -> FinetuneSettings:
    """The settings the user set; everything else (LoRA alpha included) is the schema's."""
    chosen = {k: v for k, v in knobs.items() if v is not None}
    for whole in ("lora_r", "max_seq_len"):
        if whole in chosen:
            chosen[whole] = int(chosen[whole])
    try:
        return FinetuneSettings(use_examples=examples, use_greetings=greetings, **chosen)
    except Exception as exc:
        raise ValidationError(f"training settings: {exc}") from exc


def uploads(files: list[str] | None) -> list[UploadedChat]:
    return [UploadedChat(Path(f).name, Path(f).read_bytes()) for f in files or []]


def versions_of(services: Services, agent_id: str | None) -> Updates:
    adapters = services.finetune.list_adapters(agent_id) if agent_id else []
    names = [(f"v{a.version} · {a.name}", a.name) for a in adapters]
    return {
        "versions": version_rows(adapters),
        "version_pick": gr.update(choices=names, value=None),
    }


def latest(services: Services, agent_id: str | None) -> RunView | None:
    runs = services.finetune.list_runs(agent_id) if agent_id else []
    return runs[0] if runs else None


def show_agent(services: Services, agent_id: str | None) -> Updates:
    """The agent's latest run (following its job if it still runs) and its versions."""
    try:
        run = latest(services, agent_id)
        versions = versions_of(services, agent_id)
    except AnimaError as exc:
        failed = {"run_id": None, "job": None, "plot": loss_frame(None), "versions": []}
        return {**failed, "report": show_error(exc), "summary": ""}
    job = run.job.id if run and run.job and not run.job.finished else None
    return {
        "run_id": run.id if run else None,
        "job": job,
        "plot": loss_frame(run),
        "report": render_report(run) if agent_id else "",
        **versions,
        "summary": "",
    }


def check(
    services: Services,
    agent_id: str | None,
    files: list[str] | None,
    examples: bool,
    greetings: bool,
    knobs: dict[str, Any],
) -> Updates:
    """What a run would train on, without starting it."""
    if not agent_id:
        return {"summary": show_error(NO_AGENT)}
    try:
        settings = options(examples, greetings, knobs)
        found = services.finetune.preview(agent_id, uploads(files), settings)
    except AnimaError as exc:
        return {"summary": show_error(exc)}
    return {"summary": render_summary(found)}


def start(
    services: Services,
    agent_id: str | None,
    files: list[str] | None,
    examples: bool,
    greetings: bool,
    knobs: dict[str, Any],
    *,
    principal: Principal,
) -> Updates:
    """Start a run; the job widget and the loss plot follow it."""
    if not agent_id:
        return {"summary": show_error(NO_AGENT)}
    try:
        settings = options(examples, greetings, knobs)
        run = services.finetune.start(agent_id, uploads(files), settings, principal=principal)
    except AnimaError as exc:
        return {"summary": show_error(exc)}
    job = run.job.id if run.job else None
    return {
        "run_id": run.id,
        "job": job,
        "summary": render_summary(run.data),
        "plot_timer": gr.Timer(active=True),
    }


def tick(services: Services, agent_id: str | None, current: str | None) -> Updates:
    """The loss so far; the plot's timer stops when the run's job has finished."""
    stopped = {"plot": loss_frame(None), "plot_timer": gr.Timer(active=False)}
    if not agent_id or not current:
        return stopped
    try:
        run = services.finetune.get_run(agent_id, current)
    except AnimaError:
        return stopped
    running = run.job is not None and not run.job.finished
    return {
        "plot": loss_frame(run),
        "report": render_report(run),
        "plot_timer": gr.Timer(active=running),
    }


def finished(services: Services, agent_id: str | None, current: str | None) -> Updates:
    shown = tick(services, agent_id, current)
    shown.pop("plot_timer")
    return {**shown, **versions_of(services, agent_id)}


def act(
    services: Services,
    action: str,
    agent_id: str | None,
    current: str | None,
    name: str | None,
    *,
    principal: Principal,
) -> Updates:
    """Activate, discard, delete or roll back an adapter (``action`` names the button)."""
    if not agent_id:
        return {"status": show_error("pick an agent first")}
    try:
        message = _apply(services, action, agent_id, current, name, principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {"status": message, **versions_of(services, agent_id)}


def _apply(
    services: Services,
    action: str,
    agent_id: str,
    current: str | None,
    name: str | None,
    principal: Principal,
) -> str:
    service = services.finetune
    if action in ("activate-run", "discard-run"):
        run = service.get_run(agent_id, current) if current else None
        if run is None or run.adapter is None:
            raise ValidationError("this run has no adapter (yet): wait for it to finish")
        name = run.adapter.name
    if action in ("activate", "delete") and not name:
        raise ValidationError("pick a version first")
    if action in ("activate", "activate-run"):
        service.activate(agent_id, str(name), principal=principal)
        return f"**{name}** is active: the agent's next reply uses it."
    if action in ("delete", "discard-run"):
        service.delete_adapter(agent_id, str(name), principal=principal)
        return f"Deleted **{name}**."
    agent = service.rollback(agent_id, principal=principal)
    return f"Rolled back: the agent now uses **{agent.adapter or 'the base model'}**."
