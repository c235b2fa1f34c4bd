"""Group chat handlers: start a chat with several agents, and let one of them reply now.

The chat itself (sending, the bubbles) is the chat screen's; these only add what a group
needs. Who answers a sent message is the chat's reply order, kept by the service.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from ui.chat.handlers import chat_messages, conversation_choices, stream_reply
from ui.common import show_error
from ui.wiring import Updates

REPLY_ORDER_CHOICES = [
    ("Round robin", "round_robin"),
    ("By name mention", "mention"),
    ("Manual (let X reply)", "manual"),
]


def speaker_choices(
    services: Services, conv_id: str | None, *, principal: Principal
) -> list[tuple[str, str]]:
    """The members of the chat (or its one agent), in speaking order."""
    if not conv_id:
        return []
    conv = services.chat.get_conversation(conv_id, principal=principal)
    choices = []
    for agent_id in conv.members or [conv.agent_id]:
        try:
            choices.append((services.agents.get_agent(agent_id).name, agent_id))
        except AnimaError:  # deleted meanwhile
            continue
    return choices


def show_speakers(services: Services, conv_id: str | None, *, principal: Principal) -> Updates:
    """The "let X reply" row for the opened chat: shown for group chats only."""
    try:
        choices = speaker_choices(services, conv_id, principal=principal)
        conv = services.chat.get_conversation(conv_id, principal=principal) if conv_id else None
        group = conv is not None and bool(conv.members)
    except AnimaError:
        choices, group = [], False
    value = choices[0][1] if choices else None
    return {
        "speaker": gr.update(choices=choices, value=value),
        "speaker_row": gr.update(visible=group),
    }


def start_group(
    services: Services,
    agent_ids: list[str] | None,
    reply_order: str,
    user_name: str,
    *,
    principal: Principal,
) -> Updates:
    """A new group chat: its first member becomes the screen's agent, the chat is opened."""
    try:
        conv = services.group_chat.create_group(
            agent_ids or [], reply_order or "round_robin", user_name, principal=principal
        )
        choices = conversation_choices(services, conv.agent_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {
        "agent": conv.agent_id,
        "conversation": gr.update(choices=choices, value=conv.id),
        "chatbot": chat_messages(conv),
        "status": "",
    }


def let_reply(
    services: Services, conv_id: str | None, agent_id: str | None, *, principal: Principal
) -> Iterator[Updates]:
    """The picked member replies now, streamed under its name."""
    try:
        if not conv_id:
            raise ValidationError("open or start a group chat first")
        if not agent_id:
            raise ValidationError("pick who replies")
        reply = services.group_chat.reply(conv_id, agent_id, principal=principal)
        base = chat_messages(services.chat.get_conversation(conv_id, principal=principal))
    except AnimaError as exc:
        yield {"status": show_error(exc)}
        return
    yield {"chatbot": base, "status": ""}
    yield from stream_reply(base, reply)
