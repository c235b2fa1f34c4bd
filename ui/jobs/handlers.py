"""The Jobs screen's handlers: the table of recent jobs and the choices of its job picker."""

from __future__ import annotations

import gradio as gr

from container import Services
from core.jobs import JobView
from core.principal import Principal
from ui.wiring import Updates

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


def load(services: Services, wanted: str, current: str | None, *, principal: Principal) -> Updates:
    """The newest jobs the user may see (of one status, or all); the pick stays if still listed."""
    views = services.jobs.list(
        status=None if wanted == ALL else wanted, limit=LIST_LIMIT, principal=principal
    )
    choices = job_choices(views)
    value = current if current in {v for _, v in choices} else None
    return {"table": job_rows(views), "picker": gr.update(choices=choices, value=value)}
