"""``/api/jobs``: list, inspect, cancel and follow background jobs. Translates HTTP to calls.

A job belongs to the wallet that submitted it and to the owner of its target (the agent's
holder or creator, the knowledge base's creator); ``JobService`` checks the caller. The list
only holds the caller's jobs (never an error); reading, following or cancelling someone
else's job answers 403 (401 when not signed in) with who owns it, the same as an edit of
someone else's agent. Job ids are random and unlisted for strangers, so the 403 reveals no
more than the owner check of the target would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import Caller, services
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
    principal: Caller,
    kind: str | None = None,
    status: Status | None = None,
    agent_id: Annotated[str | None, Query(description="Shorthand for target_type=agent")] = None,
    target_type: str | None = None,
    target_id: str | None = None,
    owner: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[JobView]:
    """Newest first, only the caller's jobs; every filter is optional."""
    if agent_id is not None:
        target_type, target_id = "agent", agent_id
    return svc.jobs.list(
        kind=kind,
        status=status,
        target_type=target_type,
        target_id=target_id,
        owner=owner,
        limit=limit,
        principal=principal,
    )


@router.get("/{job_id}", response_model=JobView)
def get_job(svc: Svc, principal: Caller, job_id: str) -> JobView:
    return svc.jobs.get(job_id, principal=principal)


@router.post("/{job_id}/cancel", response_model=JobView)
def cancel_job(svc: Svc, principal: Caller, job_id: str) -> JobView:
    """409 when the job already finished; a running step completes, the next never starts."""
    return svc.jobs.cancel(job_id, principal=principal)


@router.get("/{job_id}/events")
def job_events(svc: Svc, principal: Caller, job_id: str) -> object:
    """Server-sent events: ``progress`` with the job each time it changes, then ``end``."""
    views = svc.jobs.watch(job_id, principal=principal)
    first = next(views)  # 404/403 before the stream starts

    def frames() -> Iterator[str]:
        for view in itertools.chain([first], views):
            data = view.model_dump(mode="json")
            yield sse_event(data, event="end" if view.finished else "progress")

    return sse_response(frames())
