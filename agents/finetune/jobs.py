"""The fine-tune job kind: registered with the jobs layer, run by the app or any worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.finetune.service import JOB_KIND
from core.jobs import JobContext, job_kind

if TYPE_CHECKING:
    from agents.finetune.service import FinetuneService


@dataclass(frozen=True)
class FinetuneJobDeps:
    """What the fine-tune job uses (handed over in ``container.py``)."""

    finetune: FinetuneService


@job_kind(JOB_KIND, deps=FinetuneJobDeps)
def finetune(ctx: JobContext[FinetuneJobDeps], *, run_id: str) -> dict[str, Any]:
    """Prepare, train (resumable), evaluate and publish one run's adapter."""
    return ctx.deps.finetune.run_job(ctx, run_id)
