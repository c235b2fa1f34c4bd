"""What the API, the UI and ``wait`` show about one job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from core.db import UTCDateTime
from core.job_records import JobRecord

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")


class JobView(BaseModel):
    """One job: ``owner`` is the wallet that submitted it (``None``: anonymous or the app)."""

    id: str
    kind: str
    owner: str | None
    target_type: str | None
    target_id: str | None
    status: JobStatus
    progress_done: int
    progress_total: int
    message: str
    result: dict[str, Any] | None
    error: str | None
    executor_id: str | None
    created_at: UTCDateTime
    started_at: UTCDateTime | None
    finished_at: UTCDateTime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def of(cls, record: JobRecord) -> JobView:
        return cls(
            id=record.id,
            kind=record.kind,
            owner=record.owner,
            target_type=record.target_type,
            target_id=record.target_id,
            status=record.status,  # type: ignore[arg-type]
            progress_done=record.progress_done,
            progress_total=record.progress_total,
            message=record.message,
            result=record.result,
            error=record.error,
            executor_id=record.executor_id,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )
