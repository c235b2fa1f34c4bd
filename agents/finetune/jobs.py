"""The fine-tune job kind: registered with the jobs layer, run by the app or any worker."""

from __future__ import annotations

from typing import Any

from agents.finetune.service import JOB_KIND
from core.jobs import JobContext, job_kind


@job_kind(JOB_KIND)
def finetune(ctx: JobContext, *, run_id: str) -> dict[str, Any]:
    """Prepare, train (resumable), evaluate and publish one run's adapter."""
    return ctx.services.finetune.run_job(ctx, run_id)
