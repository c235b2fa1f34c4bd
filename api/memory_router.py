"""A conversation's prompt settings (persona, author's note, summary) and pinned messages.

``PATCH /api/conversations/{conversation_id}`` changes only the fields given. Pins keep a
message in every prompt however long the chat grows. The summary itself is written by a
background job (``agents.memory``); ``POST .../summarise`` asks for one now.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from agents.conversations import ConversationView, MessageView
from agents.memory import ChatSettings
from agents.schema import ChatMessage
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_responses
from container import Services

router = APIRouter(
    prefix="/api/conversations",
    tags=["conversations"],
    responses=error_responses(*GUARD_ERRORS, 404),
)
Svc = Annotated[Services, Depends(services)]


class PromptPreview(BaseModel):
    messages: list[ChatMessage]
    prompt_tokens: int
    dropped_history: int


class SummaryJob(BaseModel):
    job_id: str | None  # None: the history still fits, nothing to summarise


@router.patch("/{conversation_id}", response_model=ConversationView)
def update_conversation(
    svc: Svc, conversation_id: str, body: ChatSettings, principal: Caller
) -> ConversationView:
    """Persona, author's note (text, depth, frequency) and summary (text, pinned)."""
    return svc.memory.update_settings(conversation_id, body, principal=principal)


@router.get("/{conversation_id}/pins", response_model=list[MessageView])
def list_pins(svc: Svc, conversation_id: str, principal: Caller) -> list[MessageView]:
    return svc.memory.pinned_messages(conversation_id, principal=principal)


@router.put("/{conversation_id}/messages/{message_id}/pin", response_model=MessageView)
def pin_message(svc: Svc, conversation_id: str, message_id: str, principal: Caller) -> MessageView:
    return svc.memory.pin(conversation_id, message_id, True, principal=principal)


@router.delete("/{conversation_id}/messages/{message_id}/pin", response_model=MessageView)
def unpin_message(
    svc: Svc, conversation_id: str, message_id: str, principal: Caller
) -> MessageView:
    return svc.memory.pin(conversation_id, message_id, False, principal=principal)


@router.get("/{conversation_id}/prompt", response_model=PromptPreview)
def preview_prompt(svc: Svc, conversation_id: str, principal: Caller) -> PromptPreview:
    """The prompt the agent would read if it replied now."""
    build = svc.memory.preview(conversation_id, principal=principal)
    return PromptPreview(
        messages=build.messages,
        prompt_tokens=build.prompt_tokens,
        dropped_history=build.dropped_history,
    )


@router.post("/{conversation_id}/summarise", response_model=SummaryJob)
def summarise(svc: Svc, conversation_id: str, principal: Caller) -> SummaryJob:
    """Queue the summary job now if the history no longer fits (it is also queued by itself
    after a reply)."""
    return SummaryJob(job_id=svc.memory.queue_summary(conversation_id, principal=principal))
