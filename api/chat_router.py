"""Conversations and messages. Replies stream as server-sent events when ``stream`` is true.

SSE frames: ``event: delta`` with ``{"text": ...}`` for each piece of the reply, then
``event: done`` with ``{"message": ..., "usage": ...}``, or ``event: error`` with
``{"message": ...}`` if the model fails mid-reply or the conversation is deleted or edited
meanwhile (then the reply is not stored).

Continue streams only the new text (``done`` carries the whole message); impersonate streams
a draft of the user's next line, never stored (``done`` carries ``{"text": ..., "usage": ...}``).
Regenerate with ``n`` > 1 adds n versions in one call and answers only as JSON: several
replies interleaved in one event stream would need a version index on every frame that no
chat client reads, so ``stream`` with ``n`` > 1 is a 422.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, Field, model_validator

from agents.chat import MAX_VERSIONS_PER_CALL, ConversationView, MessageView, ReplyStream, Usage
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
    responses=error_responses(*GUARD_ERRORS, 401, 404, 409, 429, 502, 503),
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
    n: int = Field(
        default=1,
        ge=1,
        le=MAX_VERSIONS_PER_CALL,
        description="How many new versions to write at once (the last one is shown); "
        "n > 1 answers as JSON only.",
    )

    @model_validator(mode="after")
    def _one_stream(self) -> Regenerate:
        if self.stream and self.n > 1:
            raise ValueError("stream is for one version: use n = 1, or stream = false")
        return self


class Generate(BaseModel):
    """Continue or impersonate: whole or as SSE, like a send."""

    stream: bool = False
    generation: dict[str, Any] | None = None


class SelectVersion(BaseModel):
    index: int = Field(ge=0, description="Which version to show (0 is the first).")


class EditMessage(BaseModel):
    content: str = Field(min_length=1)


class Draft(BaseModel):
    text: str
    usage: Usage


class Reply(BaseModel):
    message: MessageView | None
    usage: Usage
    sources: list[Source] = Field(
        default=[], description="The knowledge chunks the reply was grounded on ([1], [2]...)."
    )


@router.get("/agents/{agent_id}/conversations", response_model=list[ConversationView])
def list_conversations(svc: Svc, agent_id: str, principal: Caller) -> list[ConversationView]:
    """The caller's chats with the agent (and shared ones started before chats had owners)."""
    return svc.chat.list_conversations(agent_id, principal=principal)


@router.post(
    "/agents/{agent_id}/conversations",
    response_model=ConversationView,
    status_code=status.HTTP_201_CREATED,
)
def create_conversation(
    svc: Svc, agent_id: str, principal: Caller, body: NewConversation | None = None
) -> ConversationView:
    """A new chat, private to the caller: its wallet, or this browser's visitor cookie."""
    body = body or NewConversation()
    svc.agents.require_visible(agent_id, principal=principal)  # 404: someone else's private
    persona = svc.personas.for_new_chat(body.persona_id, principal=principal)
    return svc.chat.create_conversation(
        agent_id, body.user_name, body.greeting, persona=persona, principal=principal
    )


@router.get("/conversations/{conversation_id}", response_model=ConversationView)
def get_conversation(svc: Svc, conversation_id: str, principal: Caller) -> ConversationView:
    return svc.chat.get_conversation(conversation_id, principal=principal)


@router.post("/conversations/{conversation_id}/claim", response_model=ConversationView)
def claim_conversation(svc: Svc, conversation_id: str, principal: Caller) -> ConversationView:
    """Make a shared conversation (one started before chats had owners) your own."""
    return svc.chat.claim_conversation(conversation_id, principal=principal)


@router.delete("/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_conversation(svc: Svc, conversation_id: str, principal: Caller) -> Response:
    svc.chat.delete_conversation(conversation_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/conversations/{conversation_id}/messages", response_model=list[MessageView])
def list_messages(svc: Svc, conversation_id: str, principal: Caller) -> list[MessageView]:
    return svc.chat.get_conversation(conversation_id, principal=principal).messages


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
    """A new version of the last reply, shown; the old ones stay in ``versions``."""
    body = body or Regenerate()
    if body.n > 1:
        start = partial(
            svc.chat.regenerate_versions,
            conversation_id,
            body.n,
            body.generation,
            principal=principal,
        )
        message, usage = await anyio.to_thread.run_sync(start)
        return Reply(message=message, usage=usage)
    start = partial(svc.chat.regenerate, conversation_id, body.generation, principal=principal)
    reply = await anyio.to_thread.run_sync(start)
    return await _respond(reply, body.stream, request)


@router.post(
    "/conversations/{conversation_id}/continue",
    response_model=Reply,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def continue_reply(
    svc: Svc,
    conversation_id: str,
    request: Request,
    principal: Caller,
    body: Generate | None = None,
) -> Any:
    """More of the last reply, appended to its shown version (SSE: the new text only)."""
    body = body or Generate()
    start = partial(svc.chat.continue_reply, conversation_id, body.generation, principal=principal)
    reply = await anyio.to_thread.run_sync(start)
    return await _respond(reply, body.stream, request)


@router.post(
    "/conversations/{conversation_id}/impersonate",
    response_model=Draft,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def impersonate(
    svc: Svc,
    conversation_id: str,
    request: Request,
    principal: Caller,
    body: Generate | None = None,
) -> Any:
    """A draft of the user's next message, written by the model as the user; not stored."""
    body = body or Generate()
    start = partial(svc.chat.impersonate, conversation_id, body.generation, principal=principal)
    reply = await anyio.to_thread.run_sync(start)
    if not body.stream:
        await collect_unless_disconnected(request, reply)
        return Draft(text=reply.text, usage=reply.usage)
    return sse_response(_frames(reply, draft=True))


@router.put(
    "/conversations/{conversation_id}/messages/{message_id}/selected",
    response_model=MessageView,
)
def select_version(
    svc: Svc, conversation_id: str, message_id: str, body: SelectVersion, principal: Caller
) -> MessageView:
    """Show another version of a message (a swipe); the next reply reads that one."""
    return svc.chat.select_version(conversation_id, message_id, body.index, principal=principal)


@router.patch(
    "/conversations/{conversation_id}/messages/{message_id}",
    response_model=MessageView,
    responses=error_responses(422),
)
def edit_message(
    svc: Svc, conversation_id: str, message_id: str, body: EditMessage, principal: Caller
) -> MessageView:
    """The edited text becomes the message's newest version, shown; the old ones stay."""
    return svc.chat.edit_message(conversation_id, message_id, body.content, principal=principal)


@router.delete(
    "/conversations/{conversation_id}/messages/{message_id}",
    status_code=status.HTTP_204_NO_CONTENT,
)
def delete_message(
    svc: Svc,
    conversation_id: str,
    message_id: str,
    principal: Caller,
    and_after: Annotated[
        bool, Query(description="Also delete every message after this one.")
    ] = False,
) -> Response:
    svc.chat.delete_message(conversation_id, message_id, and_after=and_after, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/conversations/{conversation_id}/messages/{message_id}/branch",
    response_model=ConversationView,
    status_code=status.HTTP_201_CREATED,
)
def branch(svc: Svc, conversation_id: str, message_id: str, principal: Caller) -> ConversationView:
    """A new conversation holding the history up to and including this message."""
    return svc.chat.branch(conversation_id, message_id, principal=principal)


async def _respond(reply: ReplyStream, stream: bool, request: Request) -> Any:
    """Async: waiting for the model holds no thread; a disconnect cancels the request."""
    if not stream:
        await collect_unless_disconnected(request, reply)
        return Reply(message=reply.message, usage=reply.usage, sources=reply.sources)
    return sse_response(_frames(reply))


async def _frames(reply: ReplyStream, *, draft: bool = False) -> AsyncIterator[str]:
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
    done: BaseModel = (
        Draft(text=reply.text, usage=reply.usage)
        if draft
        else Reply(message=reply.message, usage=reply.usage, sources=reply.sources)
    )
    yield sse_event(done.model_dump(mode="json"), "done")
