"""``/api/agents``: CRUD, card import/export and avatars. Translates HTTP to service calls."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, File, Query, Response, UploadFile, status

from agents.agent_search import MAX_PAGE, MAX_TEXT, AgentQuery, Sort
from agents.service import AgentView
from api.deps import AgentOwner, Caller, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from api.uploads import process_upload
from container import Services
from core.errors import NotFoundError

router = APIRouter(
    prefix="/api/agents",
    tags=["agents"],
    responses=error_responses(*GUARD_ERRORS, *OWNER_ERRORS, 404),
)
Svc = Annotated[Services, Depends(services)]

AGENT_EXAMPLE = {
    "name": "Aria",
    "description": "{{char}} is a cheerful ship's navigator.",
    "personality": "curious, kind",
    "scenario": "{{user}} boards the airship.",
    "first_mes": "Welcome aboard, {{user}}!",
    "generation": {"temperature": 0.7, "max_new_tokens": 120},
}


@router.get("", response_model=list[AgentView])
def list_agents(
    svc: Svc,
    principal: Caller,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Agents to skip.")] = 0,
    q: Annotated[
        str,
        Query(
            max_length=MAX_TEXT,
            description="Search: agents whose name or one of whose tags contains this text "
            "(any case).",
        ),
    ] = "",
    tag: Annotated[
        str, Query(max_length=MAX_TEXT, description="Only agents with this tag (any case).")
    ] = "",
    owner: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only the agents of this wallet address, or `me` for your own (all "
            "their visibilities; nothing when you are not signed in).",
        ),
    ] = None,
    sort: Annotated[
        Sort,
        Query(description="`oldest` first (the default), `recent`: last changed first, `name`."),
    ] = "oldest",
) -> list[AgentView]:
    """Public agents and your own (any visibility), one page at a time; ``X-Total-Count``
    says how many match, ``X-Next-Offset`` the ``offset`` of the next page (absent on the
    last)."""
    page = svc.agents.search_agents(
        AgentQuery(q=q, tag=tag, owner=owner, sort=sort, limit=limit, offset=offset),
        principal=principal,
    )
    response.headers["X-Total-Count"] = str(page.total)
    if page.next_offset is not None:
        response.headers["X-Next-Offset"] = str(page.next_offset)
    return page.agents


@router.post("", response_model=AgentView, status_code=status.HTTP_201_CREATED)
def create_agent(
    svc: Svc,
    principal: Caller,
    payload: Annotated[
        dict[str, Any],
        Body(
            description="Card fields (Character Card V2/V3 `data` keys) plus Anima's own "
            "`generation`, `model`, `adapter`, `visibility` (`public`, `unlisted`: usable by "
            "id but not listed, `private`: yours only; signed in only).",
            examples=[AGENT_EXAMPLE],
        ),
    ],
) -> AgentView:
    """Signed in: the agent is yours, and minted to your wallet (a job). Anonymous: nobody
    owns it (see the README's ownership rules)."""
    return svc.agents.create_agent(payload, principal=principal, owner=principal.address)


@router.post("/import", response_model=AgentView, status_code=status.HTTP_201_CREATED)
async def import_card(
    svc: Svc, principal: Caller, file: Annotated[UploadFile, File()]
) -> AgentView:
    """Create an agent from a SillyTavern character card: PNG, JSON (V1/V2/V3) or CHARX."""
    return await process_upload(
        file,
        svc.settings.server.max_upload_bytes,
        lambda name, content: svc.agents.import_card(
            name, content, principal=principal, owner=principal.address
        ),
    )


@router.get("/{agent_id}", response_model=AgentView)
def get_agent(svc: Svc, agent_id: str, principal: Caller) -> AgentView:
    """404 for someone else's private agent, as for an id that does not exist."""
    return svc.agents.get_visible(agent_id, principal=principal)


@router.patch("/{agent_id}", response_model=AgentView)
def update_agent(
    svc: Svc, agent_id: str, patch: Annotated[dict[str, Any], Body()], principal: AgentOwner
) -> AgentView:
    """Change the named fields; every other field, unknown card keys included, is kept.
    Owner only; a minted agent's new card hash is anchored on chain (a job)."""
    return svc.agents.update_agent(agent_id, patch, principal=principal)


@router.put("/{agent_id}", response_model=AgentView, include_in_schema=False)
def put_agent(
    svc: Svc, agent_id: str, patch: Annotated[dict[str, Any], Body()], principal: AgentOwner
) -> AgentView:
    return svc.agents.update_agent(agent_id, patch, principal=principal)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_agent(svc: Svc, agent_id: str, principal: AgentOwner) -> Response:
    """Owner only. The token (if minted) stays on chain; its metadata route answers 404."""
    svc.agents.delete_agent(agent_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{agent_id}/card",
    responses={200: {"content": {"image/png": {}, "application/json": {}, "application/zip": {}}}},
)
def export_card(
    svc: Svc,
    agent_id: str,
    principal: Caller,
    format: Annotated[Literal["png", "json", "charx"], Query()] = "png",
    spec: Annotated[Literal["v2", "v3"], Query()] = "v3",
) -> Response:
    """The agent as a character card file (PNG carries both `chara` and `ccv3` chunks)."""
    svc.agents.require_visible(agent_id, principal=principal)
    card = svc.agents.export_card(agent_id, format, spec)
    disposition = f"attachment; filename*=UTF-8''{quote(card.filename)}"
    return Response(
        card.content, media_type=card.media_type, headers={"Content-Disposition": disposition}
    )


@router.get("/{agent_id}/avatar", responses={200: {"content": {"image/png": {}}}})
def get_avatar(svc: Svc, agent_id: str, principal: Caller) -> Response:
    svc.agents.require_visible(agent_id, principal=principal)
    image = svc.agents.avatar(agent_id)
    if image is None:
        raise NotFoundError("this agent has no avatar")
    return Response(image, media_type="image/png")


@router.put("/{agent_id}/avatar", response_model=AgentView)
async def set_avatar(
    svc: Svc, agent_id: str, file: Annotated[UploadFile, File()], principal: AgentOwner
) -> AgentView:
    return await process_upload(
        file,
        svc.settings.server.max_upload_bytes,
        lambda _name, content: svc.agents.set_avatar(agent_id, content, principal=principal),
    )
