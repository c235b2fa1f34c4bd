"""On-chain routes: the chain, an agent's token (mint, status, verify, anchor) and the
ERC-721 metadata that ``tokenURI`` points at. Translates HTTP to ``ChainService`` calls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field

from api.deps import AgentOwner, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from chain.service import AnchorRequest, ChainInfo, ChainStatus, VerifyView
from container import Services
from core.jobs import JobView

router = APIRouter(
    tags=["chain"], responses=error_responses(*GUARD_ERRORS, *OWNER_ERRORS, 404, 409, 502)
)
Svc = Annotated[Services, Depends(services)]


class SignedAnchor(BaseModel):
    card_hash: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$")
    version: int = Field(ge=0)
    deadline: int = Field(ge=0)
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]+$", max_length=1000)


@router.get("/api/chain", response_model=ChainInfo)
def chain_info(svc: Svc) -> ChainInfo:
    """Which chain, contract, minter and ERC-6551 registry this app uses."""
    return svc.chain.info()


@router.post(
    "/api/agents/{agent_id}/mint", response_model=JobView, status_code=status.HTTP_202_ACCEPTED
)
def mint(svc: Svc, agent_id: str, principal: AgentOwner) -> JobView:
    """Mint the agent to your wallet (a durable job; follow it at /api/jobs/{id})."""
    return svc.chain.request_mint(agent_id, principal=principal)


@router.get("/api/agents/{agent_id}/chain", response_model=ChainStatus)
def chain_status(svc: Svc, agent_id: str) -> ChainStatus:
    """Token id, contract, owner (read from the chain), card version, token-bound account,
    royalty, and whether the served card matches the hash on chain."""
    return svc.chain.status(agent_id)


@router.get("/api/agents/{agent_id}/chain/verify", response_model=VerifyView)
def verify(svc: Svc, agent_id: str) -> VerifyView:
    """Recompute the served card's hash and compare it with the chain's, read now."""
    return svc.chain.verify(agent_id)


@router.get("/api/agents/{agent_id}/chain/anchor", response_model=AnchorRequest)
def anchor_request(svc: Svc, agent_id: str) -> AnchorRequest:
    """The EIP-712 ``CardUpdate`` to sign (``eth_signTypedData_v4``) to anchor the served card."""
    return svc.chain.anchor_request(agent_id)


@router.post(
    "/api/agents/{agent_id}/chain/anchor",
    response_model=JobView,
    status_code=status.HTTP_202_ACCEPTED,
)
def submit_anchor(svc: Svc, agent_id: str, body: SignedAnchor, principal: AgentOwner) -> JobView:
    """Relay your signed card update (the platform pays the gas)."""
    return svc.chain.submit_anchor(
        agent_id,
        principal=principal,
        card_hash=body.card_hash,
        version=body.version,
        deadline=body.deadline,
        signature=body.signature,
    )


@router.get("/api/nft/{token_id}", tags=["chain"])
def token_metadata(svc: Svc, request: Request, token_id: str) -> dict[str, Any]:
    """ERC-721 metadata JSON: name, description, image, attributes, card hash."""
    return svc.chain.metadata(token_id, str(request.base_url))


@router.get(
    "/api/nft/{token_id}/image", tags=["chain"], responses={200: {"content": {"image/png": {}}}}
)
def token_image(svc: Svc, token_id: str) -> Response:
    """The token's image (its metadata links it): the avatar, or the default one drawn for it."""
    return Response(svc.chain.tokens.image(token_id), media_type="image/png")
