"""Group chats over REST: start one with several agents, change who is in it and the reply
order, and let one member reply now. Sending in a group goes through the ordinary
``POST /api/conversations/{id}/messages``, which answers by the chat's reply order."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field

from agents.conversations import ConversationView
from api.chat_router import Reply, _respond
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_responses
from container import Services

router = APIRouter(
    prefix="/api/conversations",
    tags=["conversations"],
    responses=error_responses(*GUARD_ERRORS, 404, 409, 422, 429, 502, 503),
)
Svc = Annotated[Services, Depends(services)]
ReplyOrder = Literal["manual", "round_robin", "mention"]


class NewGroupChat(BaseModel):
    agent_ids: list[str] = Field(
        min_length=2, max_length=16, description="The members, in speaking order."
    )
    reply_order: ReplyOrder = Field(
        default="round_robin",
        description="Who answers a message: nobody until asked (manual), the member after "
        "the last speaker (round_robin), or a member the message names (mention).",
    )
    user_name: str = Field(default="User", max_length=100)


class GroupChange(BaseModel):
    agent_ids: list[str] | None = Field(default=None, min_length=2, max_length=16)
    reply_order: ReplyOrder | None = None


class LetReply(BaseModel):
    agent_id: str | None = Field(
        default=None, description="The member who speaks now; by default the next in turn."
    )
    stream: bool = False
    generation: dict[str, Any] | None = None


@router.post("", response_model=ConversationView, status_code=status.HTTP_201_CREATED)
def create_group_chat(svc: Svc, body: NewGroupChat, principal: Caller) -> ConversationView:
    """A group chat; it opens with each member's greeting, in speaking order."""
    return svc.group_chat.create_group(
        body.agent_ids, body.reply_order, body.user_name, principal=principal
    )


@router.patch("/{conversation_id}/group", response_model=ConversationView)
def change_group(
    svc: Svc, conversation_id: str, body: GroupChange, principal: Caller
) -> ConversationView:
    """New members (in speaking order) and/or a new reply order."""
    return svc.group_chat.update_group(
        conversation_id, body.agent_ids, body.reply_order, principal=principal
    )


@router.post(
    "/{conversation_id}/reply",
    response_model=Reply,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def let_reply(
    svc: Svc,
    conversation_id: str,
    request: Request,
    principal: Caller,
    body: LetReply | None = None,
) -> Any:
    """Let one member reply now ("let X reply"), whole or as SSE like a send."""
    body = body or LetReply()
    start = partial(
        svc.group_chat.reply, conversation_id, body.agent_id, body.generation, principal=principal
    )
    reply = await anyio.to_thread.run_sync(start)
    return await _respond(reply, body.stream, request)
