"""The Jobs tab: recent background jobs (ingestion, mints, training) with progress and cancel.

A place to find any job again after leaving the panel that started it: the table lists the
newest jobs, picking one shows the shared progress bar + Cancel widget for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from container import Services
from core.jobs import STATUSES, JobView
from ui.common import principal_of
from ui.jobs_widget import job_widget


@dataclass
class JobsTab:
    """The studio calls ``refresh`` on page load so the table is never stale."""

    refresh: Callable[..., Any]
    inputs: list[Any]
    outputs: list[Any]


COLUMNS = ["started", "kind", "target", "status", "progress", "message", "id"]
ALL = "all"
LIST_LIMIT = 50


def job_rows(views: list[JobView]) -> list[list[str]]:
    rows = []
    for v in views:
        target = f"{v.target_type}:{v.target_id}" if v.target_type else ""
        progress = f"{v.progress_done}/{v.progress_total}" if v.progress_total else ""
        rows.append(
            [
                v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                v.kind,
                target,
                v.status,
                progress,
                (v.error if v.status == "failed" else v.message) or "",
                v.id,
            ]
        )
    return rows


def job_choices(views: list[JobView]) -> list[tuple[str, str]]:
    return [(f"{v.kind} · {v.status} · {v.id[:8]}", v.id) for v in views]


def build_jobs_tab(services: Services) -> JobsTab:
    """Lay out the tab inside the caller's ``gr.Tab`` and wire its events."""
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

    def load(wanted: str, current: str | None, request: gr.Request) -> tuple[Any, Any]:
        views = services.jobs.list(
            status=None if wanted == ALL else wanted,
            limit=LIST_LIMIT,
            principal=principal_of(services, request),
        )
        choices = job_choices(views)
        value = current if current in {v for _, v in choices} else None
        return job_rows(views), gr.update(choices=choices, value=value)

    for event in (refresh.click, status.change):
        event(load, inputs=[status, picker], outputs=[table, picker], show_progress="hidden")
    picker.change(lambda job: job, inputs=[picker], outputs=[widget.job_id])
    widget.finished.change(load, inputs=[status, picker], outputs=[table, picker])
    return JobsTab(refresh=load, inputs=[status, picker], outputs=[table, picker])
