"""``/api/knowledge-bases`` and the knowledge routes of agents and messages.

Translates HTTP to ``KnowledgeService`` calls. Uploads are read with the size cap of
``read_upload`` and parsed in a worker thread, so a large PDF never blocks the event loop.
"""

from __future__ import annotations

import functools
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, File, Query, Response, UploadFile, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import AgentOwner, Caller, read_upload, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from container import Services
from core.errors import UploadTooLargeError
from knowledge.loaders import clean_filename
from knowledge.service import (
    DocumentView,
    KnowledgeBaseView,
    SearchHit,
    TraceView,
    UploadResult,
)

router = APIRouter(
    prefix="/api",
    tags=["knowledge"],
    responses=error_responses(*GUARD_ERRORS, *OWNER_ERRORS, 404, 409, 415),
)
Svc = Annotated[Services, Depends(services)]
Mode = Literal["hybrid", "dense"]


class NewKnowledgeBase(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Ship's manual"])
    description: str = Field(default="", max_length=5000)


@router.post(
    "/knowledge-bases", response_model=KnowledgeBaseView, status_code=status.HTTP_201_CREATED
)
def create_knowledge_base(svc: Svc, body: NewKnowledgeBase, principal: Caller) -> KnowledgeBaseView:
    """A new base owned by the signed-in wallet (only it may change the base's documents)."""
    return svc.knowledge.create_base(body.name, body.description, principal=principal)


@router.get("/knowledge-bases", response_model=list[KnowledgeBaseView])
def list_knowledge_bases(svc: Svc) -> list[KnowledgeBaseView]:
    return svc.knowledge.list_bases()


@router.get("/knowledge-bases/{kb_id}", response_model=KnowledgeBaseView)
def get_knowledge_base(svc: Svc, kb_id: str) -> KnowledgeBaseView:
    return svc.knowledge.get_base(kb_id)


@router.delete("/knowledge-bases/{kb_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_knowledge_base(svc: Svc, kb_id: str, principal: Caller) -> Response:
    """Delete the base, its documents and chunks; agents that used it stop using it."""
    svc.knowledge.delete_base(kb_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/knowledge-bases/{kb_id}/documents",
    response_model=UploadResult,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "This exact file is already in the base; nothing was added."},
        413: {"description": "Larger than ANIMA_KNOWLEDGE_MAX_UPLOAD_MB."},
        415: {"description": "Not PDF, TXT, Markdown, HTML or DOCX."},
        422: {"description": "Corrupt, encrypted, empty, binary or scanned (no text)."},
    },
)
async def upload_document(
    svc: Svc, kb_id: str, file: Annotated[UploadFile, File()], principal: Caller
) -> JSONResponse:
    """Add a document (PDF, TXT, Markdown, HTML, DOCX); it is indexed by a background job.

    202 with the job to follow (``GET /api/jobs/{id}``); the same name with new content
    replaces the document once the new version is indexed.
    """
    name = clean_filename(file.filename)
    try:
        content = await read_upload(file, svc.settings.knowledge.max_upload_bytes)
    except UploadTooLargeError as exc:
        raise UploadTooLargeError(f"{name}: {exc.message}") from exc
    add = functools.partial(svc.knowledge.add_document, principal=principal)
    result = await anyio.to_thread.run_sync(add, kb_id, name, content)
    code = status.HTTP_200_OK if result.duplicate else status.HTTP_202_ACCEPTED
    return JSONResponse(result.model_dump(mode="json"), status_code=code)


@router.get("/knowledge-bases/{kb_id}/documents", response_model=list[DocumentView])
def list_documents(svc: Svc, kb_id: str) -> list[DocumentView]:
    return svc.knowledge.list_documents(kb_id)


@router.get("/knowledge-bases/{kb_id}/documents/{document_id}", response_model=DocumentView)
def get_document(svc: Svc, kb_id: str, document_id: str) -> DocumentView:
    return svc.knowledge.get_document(kb_id, document_id)


@router.delete(
    "/knowledge-bases/{kb_id}/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT
)
def delete_document(svc: Svc, kb_id: str, document_id: str, principal: Caller) -> Response:
    """Unsearchable at once; a running ingest of it is cancelled."""
    svc.knowledge.delete_document(kb_id, document_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/knowledge-bases/{kb_id}/search", response_model=list[SearchHit])
def search(
    svc: Svc,
    kb_id: str,
    q: Annotated[str, Query(min_length=1, max_length=2000, description="The query.")],
    k: Annotated[int, Query(ge=1, le=50)] = 5,
    mode: Mode | None = None,
    min_score: Annotated[
        float | None, Query(ge=-1, le=1, description="Cosine similarity floor.")
    ] = None,
) -> list[SearchHit]:
    """The best chunks with their document, page, text and score (best first)."""
    return svc.knowledge.search_base(kb_id, q, k, mode, min_score)


@router.get("/agents/{agent_id}/knowledge-bases", response_model=list[KnowledgeBaseView])
def agent_knowledge_bases(svc: Svc, agent_id: str) -> list[KnowledgeBaseView]:
    return svc.knowledge.bases_for_agent(agent_id)


@router.put("/agents/{agent_id}/knowledge-bases/{kb_id}", response_model=list[KnowledgeBaseView])
def attach(svc: Svc, agent_id: str, kb_id: str, principal: AgentOwner) -> list[KnowledgeBaseView]:
    """The agent uses this base from its next reply (idempotent); returns its bases."""
    return svc.knowledge.attach(agent_id, kb_id, principal=principal)


@router.delete("/agents/{agent_id}/knowledge-bases/{kb_id}", response_model=list[KnowledgeBaseView])
def detach(svc: Svc, agent_id: str, kb_id: str, principal: AgentOwner) -> list[KnowledgeBaseView]:
    """The agent stops using the base; the base itself is kept."""
    return svc.knowledge.detach(agent_id, kb_id, principal=principal)


@router.get("/agents/{agent_id}/knowledge-search", response_model=list[SearchHit])
def agent_search(
    svc: Svc,
    agent_id: str,
    q: Annotated[str, Query(min_length=1, max_length=2000)],
    k: Annotated[int | None, Query(ge=1, le=50)] = None,
    mode: Mode | None = None,
) -> list[SearchHit]:
    """What a reply of this agent to ``q`` would be grounded on, across all its bases."""
    return svc.knowledge.search_for_agent(agent_id, q, k, mode)


@router.get("/messages/{message_id}/trace", response_model=TraceView)
def message_trace(svc: Svc, message_id: str, principal: Caller) -> TraceView:
    """A grounded reply's retrieval trace: the query, chunk ids, scores and ranks."""
    svc.chat.require_message(message_id, principal=principal)  # the chat is the caller's
    return svc.knowledge.trace(message_id)
