"""Conversations and messages. Replies stream as server-sent events when ``stream`` is true.

SSE frames: ``event: delta`` with ``{"text": ...}`` for each piece of the reply, then
``event: done`` with ``{"message": ..., "usage": ...}``, or ``event: error`` with
``{"message": ...}`` if the model fails mid-reply or the conversation is deleted meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field

from agents.chat import ConversationView, MessageView, ReplyStream, Usage
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_responses
from api.sse import collect_unless_disconnected, sse_event, sse_response
from container import Services
from core.errors import AnimaError
from knowledge.service import Source

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/api",
    tags=["conversations"],
    responses=error_responses(*GUARD_ERRORS, 404, 409, 429, 502, 503),
)
Svc = Annotated[Services, Depends(services)]


class NewConversation(BaseModel):
    user_name: str = Field(default="User", max_length=100)
    greeting: int = Field(default=0, ge=0, description="Which greeting opens the chat.")
    persona_id: str | None = Field(
        default=None, max_length=36, description="Chat as this persona (default: your default)."
    )


class SendMessage(BaseModel):
    content: str = Field(min_length=1)
    stream: bool = False
    generation: dict[str, Any] | None = Field(
        default=None, description="Overrides of the agent's generation settings, this reply only."
    )


class Regenerate(BaseModel):
    stream: bool = False
    generation: dict[str, Any] | None = None


class Reply(BaseModel):
    message: MessageView | None
    usage: Usage
    sources: list[Source] = Field(
        default=[], description="The knowledge chunks the reply was grounded on ([1], [2]...)."
    )


@router.get("/agents/{agent_id}/conversations", response_model=list[ConversationView])
def list_conversations(svc: Svc, agent_id: str) -> list[ConversationView]:
    return svc.chat.list_conversations(agent_id)


@router.post(
    "/agents/{agent_id}/conversations",
    response_model=ConversationView,
    status_code=status.HTTP_201_CREATED,
)
def create_conversation(
    svc: Svc, agent_id: str, principal: Caller, body: NewConversation | None = None
) -> ConversationView:
    body = body or NewConversation()
    persona = svc.personas.for_new_chat(body.persona_id, principal=principal)
    return svc.chat.create_conversation(agent_id, body.user_name, body.greeting, persona=persona)


@router.get("/conversations/{conversation_id}", response_model=ConversationView)
def get_conversation(svc: Svc, conversation_id: str) -> ConversationView:
    return svc.chat.get_conversation(conversation_id)


@router.delete("/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_conversation(svc: Svc, conversation_id: str, principal: Caller) -> Response:
    svc.chat.delete_conversation(conversation_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/conversations/{conversation_id}/messages", response_model=list[MessageView])
def list_messages(svc: Svc, conversation_id: str) -> list[MessageView]:
    return svc.chat.get_conversation(conversation_id).messages


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=Reply,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def send_message(
    svc: Svc, conversation_id: str, body: SendMessage, request: Request, principal: Caller
) -> Any:
    """Send the user's message; the agent's reply comes back whole or as SSE."""
    start = partial(
        svc.chat.send, conversation_id, body.content, body.generation, principal=principal
    )
    reply = await anyio.to_thread.run_sync(start)
    return await _respond(reply, body.stream, request)


@router.post(
    "/conversations/{conversation_id}/regenerate",
    response_model=Reply,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def regenerate(
    svc: Svc,
    conversation_id: str,
    request: Request,
    principal: Caller,
    body: Regenerate | None = None,
) -> Any:
    """Replace the last reply with a new one; the old text stays in ``alternatives``."""
    body = body or Regenerate()
    start = partial(svc.chat.regenerate, conversation_id, body.generation, principal=principal)
    reply = await anyio.to_thread.run_sync(start)
    return await _respond(reply, body.stream, request)


async def _respond(reply: ReplyStream, stream: bool, request: Request) -> Any:
    """Async: waiting for the model holds no thread; a disconnect cancels the request."""
    if not stream:
        await collect_unless_disconnected(request, reply)
        return Reply(message=reply.message, usage=reply.usage, sources=reply.sources)
    return sse_response(_frames(reply))


async def _frames(reply: ReplyStream) -> AsyncIterator[str]:
    try:
        async for delta in reply:
            yield sse_event({"text": delta}, "delta")
    except AnimaError as exc:
        yield sse_event({"message": exc.message}, "error")
        return
    except Exception:  # a bug: the stream still ends with a frame the client understands
        log.exception("reply failed")
        yield sse_event({"message": "internal error while writing the reply"}, "error")
        return
    done = Reply(message=reply.message, usage=reply.usage, sources=reply.sources)
    yield sse_event(done.model_dump(mode="json"), "done")
