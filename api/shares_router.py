"""``/api/agents/{id}/shares``, ``/api/agents/{id}/revenue`` and ``/api/shares/holdings``:
an agent's revenue-share tokens over HTTP. Translates HTTP to ``SharesService`` calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.deps import AgentOwner, Caller, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from container import Services
from economy.shares_service import (
    Claimable,
    Holder,
    Holding,
    IssueRequest,
    RevenueView,
    SharesView,
    SnapshotView,
    TxRequest,
)

# Every route may meet the key guards (401/403/429), an unknown agent (404), a refused
# transaction (409), a node that is down (503).
router = APIRouter(
    tags=["shares"],
    responses=error_responses(*GUARD_ERRORS, *OWNER_ERRORS, 404, 409),
)
Svc = Annotated[Services, Depends(services)]


class ClaimRequest(BaseModel):
    snapshot_id: int


@router.post("/api/agents/{agent_id}/shares", response_model=SharesView, status_code=201)
def issue_shares(svc: Svc, agent_id: str, body: IssueRequest, principal: AgentOwner) -> SharesView:
    """Issue the agent's shares once: the whole supply goes to its token holder."""
    return svc.shares.issue(agent_id, body, principal=principal)


@router.get("/api/agents/{agent_id}/shares", response_model=SharesView)
def get_shares(svc: Svc, agent_id: str) -> SharesView:
    return svc.shares.get(agent_id)


@router.get("/api/agents/{agent_id}/shares/holders", response_model=list[Holder])
def list_holders(svc: Svc, agent_id: str) -> list[Holder]:
    return svc.shares.holders(agent_id)


@router.get("/api/agents/{agent_id}/shares/claimable", response_model=list[Claimable])
def claimable(svc: Svc, agent_id: str, account: Annotated[str, Query()]) -> list[Claimable]:
    """What ``account`` may claim from each snapshot."""
    return svc.shares.claimable(agent_id, account)


@router.get("/api/agents/{agent_id}/shares/snapshot", response_model=TxRequest)
def snapshot_request(svc: Svc, agent_id: str) -> TxRequest:
    """The snapshot transaction for any wallet to send (409 when there is nothing new)."""
    return svc.shares.snapshot_request(agent_id)


@router.post("/api/agents/{agent_id}/shares/snapshot", response_model=SnapshotView)
def take_snapshot(svc: Svc, agent_id: str, principal: AgentOwner) -> SnapshotView:
    """Take a snapshot now, paid by the platform (the agent's owner asks)."""
    return svc.shares.snapshot(agent_id, principal=principal)


@router.post("/api/agents/{agent_id}/shares/claim", response_model=TxRequest)
def claim_request(svc: Svc, agent_id: str, body: ClaimRequest, principal: Caller) -> TxRequest:
    """The claim transaction for the caller's wallet to send (409 with the reason when it
    would revert: nothing to claim, already claimed)."""
    return svc.shares.claim_request(agent_id, body.snapshot_id, principal=principal)


@router.get("/api/agents/{agent_id}/revenue", response_model=RevenueView)
def revenue(svc: Svc, agent_id: str) -> RevenueView:
    """The agent's account balance, its shares and the income they received over time."""
    return svc.shares.revenue(agent_id)


@router.get("/api/shares/holdings", response_model=list[Holding])
def holdings(svc: Svc, principal: Caller) -> list[Holding]:
    """The caller's shares in every agent and what they may claim."""
    return svc.shares.holdings(principal=principal)
