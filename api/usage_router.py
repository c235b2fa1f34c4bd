"""``/api/usage``: what the caller used (by wallet and keys), and how their agents are used."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_responses
from container import Services
from usage.service import GroupBy, UsageQuery, UsageReport

router = APIRouter(
    prefix="/api", tags=["usage"], responses=error_responses(*GUARD_ERRORS, 401, 404)
)
Svc = Annotated[Services, Depends(services)]


@router.get("/usage", response_model=UsageReport)
def usage(
    svc: Svc,
    principal: Caller,
    group_by: Annotated[GroupBy, Query(description="day, agent or key")] = "day",
    since: datetime | None = None,
    until: datetime | None = None,
    agent_id: str | None = None,
    key_id: str | None = None,
) -> UsageReport:
    """Requests, distinct users and tokens, grouped by day, agent or key.

    Your own use (your wallet and its keys) and everyone's use of the agents you own, counted
    but never named; grouped by key it shows your keys only.
    """
    query = UsageQuery(group_by, since, until, agent_id, key_id)
    return svc.usage.report(query, principal=principal)
