"""A progress bar with a cancel button for one background job, placed where the job started.

Any panel that starts a job puts ``job_widget(services)`` next to its button and writes the
new job's id into ``widget.job_id``::

    start = gr.Button("Ingest")
    progress = job_widget(services, elem_id="kb-ingest-job")
    start.click(start_ingest, inputs=[...], outputs=[progress.job_id])

The widget then polls the job (one cheap read every ``poll_s``) until it finishes, shows
done/total, the job's message and its end state, and offers Cancel while it runs. When the job
ends it writes the final job (a dict) into ``widget.finished``, whose ``change`` event a panel
can chain a refresh to. Rendering is a pure function of the job, so tests check it directly.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from container import Services
from core.errors import AnimaError
from core.jobs import JobView
from core.principal import Principal
from ui.common import show_error
from ui.wiring import Updates, wire

STATUS_LABELS = {
    "queued": "Waiting to start",
    "running": "Running",
    "succeeded": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
HIDDEN = gr.update(visible=False)


@dataclass
class JobWidget:
    """The parts a panel wires to: set ``job_id``; listen to ``finished.change``."""

    job_id: gr.State
    finished: gr.State
    bar: gr.HTML
    cancel: gr.Button
    timer: gr.Timer


def render_job(view: JobView | None) -> str:
    """The bar as HTML: a native <progress> (accessible), the message and the end state."""
    if view is None:
        return ""
    label = STATUS_LABELS.get(view.status, view.status)
    if view.progress_total > 0:
        percent = min(100, round(100 * view.progress_done / view.progress_total))
        counts = f"{view.progress_done} / {view.progress_total} ({percent}%)"
        bar = f'<progress max="{view.progress_total}" value="{view.progress_done}"></progress>'
    else:
        counts = ""
        # An indeterminate bar while the job has not said how much work there is.
        bar = "<progress></progress>" if not view.finished else ""
    detail = view.error if view.status == "failed" and view.error else view.message
    return (
        f'<div class="anima-job" data-status="{view.status}" data-job-id="{view.id}">'
        f"{bar}<div><strong>{html.escape(label)}</strong> {html.escape(counts)} "
        f"<span>{html.escape(detail or '')}</span></div></div>"
    )


def show_job(services: Services, current: str | None, *, principal: Principal) -> Updates:
    """Render the job; keep polling (and offer Cancel) only while it is unfinished."""
    if not current:
        return {"bar": "", "cancel": HIDDEN, "timer": gr.Timer(active=False)}
    try:
        view = services.jobs.get(current, principal=principal)
    except AnimaError as exc:
        return {"bar": show_error(exc), "cancel": HIDDEN, "timer": gr.Timer(active=False)}
    updates = {
        "bar": render_job(view),
        "cancel": gr.update(visible=not view.finished),
        "timer": gr.Timer(active=not view.finished),
    }
    if view.finished:
        updates["finished"] = view.model_dump(mode="json")
    return updates


def cancel_job(services: Services, current: str | None, *, principal: Principal) -> Updates:
    if current:
        try:
            services.jobs.cancel(current, principal=principal)
        except AnimaError as exc:
            show_error(exc)
    return show_job(services, current, principal=principal)


def job_widget(services: Services, elem_id: str = "job", poll_s: float = 0.5) -> JobWidget:
    """Lay out the widget inside the caller's layout and wire its events."""
    job_id = gr.State(None)
    finished = gr.State(None)
    with gr.Row(elem_id=elem_id):
        bar = gr.HTML("", elem_id=f"{elem_id}-bar")
        cancel = gr.Button("Cancel", visible=False, size="sm", elem_id=f"{elem_id}-cancel")
    timer = gr.Timer(poll_s, active=False)

    outputs = {"bar": bar, "cancel": cancel, "timer": timer, "finished": finished}
    wire(job_id.change, show_job, services, inputs=[job_id], outputs=outputs, as_user=True)
    wire(timer.tick, show_job, services, inputs=[job_id], outputs=outputs, as_user=True)
    wire(cancel.click, cancel_job, services, inputs=[job_id], outputs=outputs, as_user=True)
    return JobWidget(job_id=job_id, finished=finished, bar=bar, cancel=cancel, timer=timer)
