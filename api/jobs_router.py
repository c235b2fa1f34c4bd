"""``/api/jobs``: list, inspect, cancel and follow background jobs. Translates HTTP to calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import services
from api.errors import GUARD_ERRORS, error_responses
from api.sse import sse_event, sse_response
from container import Services
from core.jobs import JobView

router = APIRouter(
    prefix="/api/jobs", tags=["jobs"], responses=error_responses(*GUARD_ERRORS, 404, 409)
)
Svc = Annotated[Services, Depends(services)]
Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@router.get("", response_model=list[JobView])
def list_jobs(
    svc: Svc,
    kind: str | None = None,
    status: Status | None = None,
    agent_id: Annotated[str | None, Query(description="Shorthand for target_type=agent")] = None,
    target_type: str | None = None,
    target_id: str | None = None,
    owner: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[JobView]:
    """Newest first; every filter is optional."""
    if agent_id is not None:
        target_type, target_id = "agent", agent_id
    return svc.jobs.list(
        kind=kind,
        status=status,
        target_type=target_type,
        target_id=target_id,
        owner=owner,
        limit=limit,
    )


@router.get("/{job_id}", response_model=JobView)
def get_job(svc: Svc, job_id: str) -> JobView:
    return svc.jobs.get(job_id)


@router.post("/{job_id}/cancel", response_model=JobView)
def cancel_job(svc: Svc, job_id: str) -> JobView:
    """409 when the job already finished; a running step completes, the next never starts."""
    return svc.jobs.cancel(job_id)


@router.get("/{job_id}/events")
def job_events(svc: Svc, job_id: str) -> object:
    """Server-sent events: ``progress`` with the job each time it changes, then ``end``."""
    svc.jobs.get(job_id)  # 404 before the stream starts

    def frames() -> Iterator[str]:
        for view in svc.jobs.watch(job_id):
            data = view.model_dump(mode="json")
            yield sse_event(data, event="end" if view.finished else "progress")

    return sse_response(frames())
