"""The Jobs screen: recent background jobs (ingestion, mints, training) with progress and cancel.

A place to find any job again after leaving the panel that started it: the table lists the
newest jobs, picking one shows the shared progress bar + Cancel widget for it.
"""

from __future__ import annotations

import gradio as gr

from core.jobs import STATUSES
from ui.context import StudioContext
from ui.jobs import handlers
from ui.jobs.handlers import ALL, COLUMNS
from ui.jobs.widget import job_widget
from ui.wiring import runner, wire


def build_jobs_screen(ctx: StudioContext) -> None:
    """Lay out the screen inside the caller's ``gr.Tab`` and wire its events."""
    services = ctx.services
    with gr.Row():
        status = gr.Dropdown(
            [ALL, *STATUSES], value=ALL, label="Status", elem_id="jobs-status", scale=1
        )
        refresh = gr.Button("Refresh", elem_id="jobs-refresh", scale=0)
    table = gr.Dataframe(
        headers=COLUMNS, value=[], interactive=False, wrap=True, elem_id="jobs-table"
    )
    picker = gr.Dropdown([], label="Job", elem_id="jobs-picker")
    widget = job_widget(services, elem_id="jobs-selected")

    inputs, outputs = [status, picker], {"table": table, "picker": picker}
    for event in (refresh.click, status.change):
        wire(
            event,
            handlers.load,
            services,
            inputs=inputs,
            outputs=outputs,
            show_progress="hidden",
            as_user=True,
        )
    picker.change(lambda job: job, inputs=[picker], outputs=[widget.job_id])
    wire(
        widget.finished.change,
        handlers.load,
        services,
        inputs=inputs,
        outputs=outputs,
        as_user=True,
    )
    # The table is never stale when a page opens.
    ctx.on_load(
        runner(handlers.load, services, list(outputs), as_user=True), inputs, list(outputs.values())
    )
