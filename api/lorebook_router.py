"""Lorebooks over HTTP: an agent's own book entry by entry, and standalone world-info books.

``/api/agents/{id}/lorebook/...`` edits the card's ``character_book`` (entries addressed by
their position); ``/api/lorebooks`` holds SillyTavern world-info files that can be attached to
several agents. The logic, the owner checks included, is in ``agents.lorebooks``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile, status
from pydantic import BaseModel, Field

from agents.lorebooks import MAX_ENTRIES, BookView, EntryPatch, EntryView
from api.deps import AgentOwner, Caller, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from api.uploads import process_upload
from container import Services

router = APIRouter(tags=["lorebooks"], responses=error_responses(*GUARD_ERRORS, *OWNER_ERRORS, 404))
Svc = Annotated[Services, Depends(services)]
AGENT = "/api/agents/{agent_id}"


class BulkEnable(BaseModel):
    indexes: list[int] = Field(min_length=1, max_length=MAX_ENTRIES)
    enabled: bool


class BulkDelete(BaseModel):
    indexes: list[int] = Field(min_length=1, max_length=MAX_ENTRIES)


class EntriesLeft(BaseModel):
    entries: int


def _json_file(name: str, body: dict[str, Any]) -> Response:
    filename = f"{name or 'lorebook'}.json"
    return Response(
        json.dumps(body, ensure_ascii=False, indent=2).encode(),
        media_type="application/json",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"},
    )


# ----- the card's own book -------------------------------------------------------------------
@router.get(f"{AGENT}/lorebook/entries", response_model=list[EntryView])
def list_entries(
    svc: Svc, agent_id: str, principal: Caller, q: Annotated[str, Query(max_length=200)] = ""
) -> list[EntryView]:
    """The entries, or those whose keys, comment or content contain `q`."""
    return svc.lorebooks.entries(agent_id, principal=principal, query=q)


@router.post(
    f"{AGENT}/lorebook/entries", response_model=EntryView, status_code=status.HTTP_201_CREATED
)
def add_entry(svc: Svc, agent_id: str, body: EntryPatch, principal: AgentOwner) -> EntryView:
    """A new entry at the end of the book. A pattern key RE2 cannot run is a 422."""
    return svc.lorebooks.add(agent_id, body, principal=principal)


@router.get(f"{AGENT}/lorebook/entries/{{index}}", response_model=EntryView)
def get_entry(svc: Svc, agent_id: str, index: int, principal: Caller) -> EntryView:
    return svc.lorebooks.entry(agent_id, index, principal=principal)


@router.patch(f"{AGENT}/lorebook/entries/{{index}}", response_model=EntryView)
def update_entry(
    svc: Svc, agent_id: str, index: int, body: EntryPatch, principal: AgentOwner
) -> EntryView:
    """Change the fields named; the others stay exactly as stored."""
    return svc.lorebooks.update(agent_id, index, body, principal=principal)


@router.post(
    f"{AGENT}/lorebook/entries/{{index}}/duplicate",
    response_model=EntryView,
    status_code=status.HTTP_201_CREATED,
)
def duplicate_entry(svc: Svc, agent_id: str, index: int, principal: AgentOwner) -> EntryView:
    return svc.lorebooks.duplicate(agent_id, index, principal=principal)


@router.delete(f"{AGENT}/lorebook/entries/{{index}}", status_code=status.HTTP_204_NO_CONTENT)
def delete_entry(svc: Svc, agent_id: str, index: int, principal: AgentOwner) -> Response:
    svc.lorebooks.delete(agent_id, [index], principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(f"{AGENT}/lorebook/enabled", response_model=list[EntryView])
def set_enabled(
    svc: Svc, agent_id: str, body: BulkEnable, principal: AgentOwner
) -> list[EntryView]:
    """Enable or disable many entries in one write."""
    return svc.lorebooks.set_enabled(agent_id, body.indexes, body.enabled, principal=principal)


@router.post(f"{AGENT}/lorebook/delete", response_model=EntriesLeft)
def delete_entries(svc: Svc, agent_id: str, body: BulkDelete, principal: AgentOwner) -> EntriesLeft:
    """Delete many entries in one write."""
    return EntriesLeft(entries=svc.lorebooks.delete(agent_id, body.indexes, principal=principal))


@router.get(f"{AGENT}/lorebook/world-info", responses={200: {"content": {"application/json": {}}}})
def export_agent_book(svc: Svc, agent_id: str, principal: Caller) -> Response:
    """The card's own book as a SillyTavern world-info file."""
    body = svc.lorebooks.export_world_info(agent_id, principal=principal)
    return _json_file(svc.agents.get_agent(agent_id).name, body)


# ----- attached books --------------------------------------------------------------------------
@router.get(f"{AGENT}/lorebooks", response_model=list[BookView])
def attached_books(svc: Svc, agent_id: str, principal: Caller) -> list[BookView]:
    return svc.lorebooks.attached(agent_id, principal=principal)


@router.put(f"{AGENT}/lorebooks/{{book_id}}", response_model=BookView)
def attach_book(svc: Svc, agent_id: str, book_id: str, principal: AgentOwner) -> BookView:
    """Attach one of your books: its entries join the agent's replies beside the card's."""
    return svc.lorebooks.attach(agent_id, book_id, principal=principal)


@router.delete(f"{AGENT}/lorebooks/{{book_id}}", status_code=status.HTTP_204_NO_CONTENT)
def detach_book(svc: Svc, agent_id: str, book_id: str, principal: AgentOwner) -> Response:
    svc.lorebooks.detach(agent_id, book_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ----- standalone books ------------------------------------------------------------------------
@router.get("/api/lorebooks", response_model=list[BookView])
def list_books(svc: Svc, principal: Caller) -> list[BookView]:
    """Your books (anonymous: the books nobody owns)."""
    return svc.lorebooks.books(principal=principal)


@router.post("/api/lorebooks", response_model=BookView, status_code=status.HTTP_201_CREATED)
async def import_book(
    svc: Svc,
    principal: Caller,
    file: Annotated[UploadFile, File(description="A SillyTavern world-info .json file")],
    agent_id: Annotated[str | None, Form(description="Attach it to this agent of yours")] = None,
) -> BookView:
    return await process_upload(
        file,
        svc.settings.server.max_upload_bytes,
        lambda name, content: svc.lorebooks.import_world_info(
            content, name, principal=principal, attach_to=agent_id or None
        ),
    )


@router.get("/api/lorebooks/{book_id}", responses={200: {"content": {"application/json": {}}}})
def export_book(svc: Svc, book_id: str, principal: Caller) -> Response:
    """The book as the SillyTavern world-info file it was imported from (edits included)."""
    name, body = svc.lorebooks.export_book(book_id, principal=principal)
    return _json_file(name, body)


@router.delete("/api/lorebooks/{book_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_book(svc: Svc, book_id: str, principal: Caller) -> Response:
    """Delete the book; it is detached from every agent."""
    svc.lorebooks.delete_book(book_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
