"""The chat screen's handlers for stored messages: swipe, edit, delete, branch.

A click on a bubble picks its message (``pick_message``); delete and branch act on the picked
one. Swipes act on the last message, as in other role-play apps: left and right show its
other versions, and right past the newest writes a new one (a regenerate). Every handler
answers with the stored conversation, so the widget never drifts from what the next reply
reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agents.chat import ConversationView
from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from ui.chat.handlers import (
    chat_messages,
    chat_rows,
    conversation_update,
    regenerate,
)
from ui.common import show_error
from ui.panels.knowledge.handlers import trace_sources
from ui.wiring import Updates

NOTHING_PICKED = "Click a message in the chat to pick it."


def _shown(services: Services, conv: ConversationView) -> list[dict[str, Any]]:
    return chat_messages(conv, trace_sources(services, conv))


def _message_at(services: Services, conv: ConversationView, index: Any) -> str:
    """The id of the stored message behind the ``index``-th bubble."""
    if isinstance(index, list | tuple):  # Gradio gives [row, column] for some layouts
        index = index[0] if index else None
    rows = chat_rows(conv, trace_sources(services, conv))
    if not isinstance(index, int) or not 0 <= index < len(rows) or rows[index][1] is None:
        raise ValidationError("that bubble is not a stored message")
    return rows[index][1]  # type: ignore[return-value]


def picked_note(conv: ConversationView, message_id: str | None) -> str:
    """What the picked message is, in a line."""
    found = next((m for m in conv.messages if m.id == message_id), None)
    if found is None:
        return NOTHING_PICKED
    who = conv.user_name if found.role == "user" else (found.name or "Reply")
    text = " ".join(found.content.split())
    text = text if len(text) <= 48 else text[:47] + "…"
    return f"Picked: **{who}** · {text}"


def pick_message(
    services: Services, conv_id: str | None, index: Any, *, principal: Principal
) -> Updates:
    """The user clicked a bubble: it becomes the message delete and branch act on."""
    try:
        if not conv_id:
            raise ValidationError("open or start a conversation first")
        conv = services.chat.get_conversation(conv_id, principal=principal)
        message_id = _message_at(services, conv, index)
    except AnimaError as exc:
        return {"picked": None, "picked_note": NOTHING_PICKED, "status": show_error(exc)}
    return {"picked": message_id, "picked_note": picked_note(conv, message_id), "status": ""}


def _swipe(
    services: Services, conv_id: str | None, step: int, principal: Principal
) -> Iterator[Updates]:
    try:
        if not conv_id:
            raise ValidationError("open or start a conversation first")
        conv = services.chat.get_conversation(conv_id, principal=principal)
        last = conv.messages[-1] if conv.messages else None
        if last is None or last.role != "assistant":
            raise ValidationError("the last message is not a reply: nothing to swipe")
        index = last.selected + step
        if index >= len(last.versions):  # past the newest: write a new one
            yield from regenerate(services, conv_id, principal=principal)
            return
        services.chat.select_version(conv_id, last.id, max(index, 0), principal=principal)
        conv = services.chat.get_conversation(conv_id, principal=principal)
    except AnimaError as exc:
        yield {"status": show_error(exc)}
        return
    yield {"chatbot": _shown(services, conv), "status": ""}


def swipe_left(
    services: Services, conv_id: str | None, *, principal: Principal
) -> Iterator[Updates]:
    """Show the previous version of the last reply."""
    yield from _swipe(services, conv_id, -1, principal)


def swipe_right(
    services: Services, conv_id: str | None, *, principal: Principal
) -> Iterator[Updates]:
    """Show the next version of the last reply, or write a new one after the newest."""
    yield from _swipe(services, conv_id, 1, principal)


def edit_message(
    services: Services, conv_id: str | None, index: Any, text: str, *, principal: Principal
) -> Updates:
    """The user edited a bubble in place: store it as that message's newest version."""
    if not conv_id:
        return {"status": show_error("open or start a conversation first")}
    try:
        conv = services.chat.get_conversation(conv_id, principal=principal)
        message_id = _message_at(services, conv, index)
        services.chat.edit_message(conv_id, message_id, text or "", principal=principal)
        note = ""
    except AnimaError as exc:
        note = show_error(exc)
    conv = services.chat.get_conversation(conv_id, principal=principal)
    return {"chatbot": _shown(services, conv), "status": note}


def _delete(
    services: Services,
    conv_id: str | None,
    picked: str | None,
    and_after: bool,
    principal: Principal,
) -> Updates:
    try:
        if not conv_id or not picked:
            raise ValidationError(NOTHING_PICKED)
        services.chat.delete_message(conv_id, picked, and_after=and_after, principal=principal)
        conv = services.chat.get_conversation(conv_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {
        "chatbot": _shown(services, conv),
        "picked": None,
        "picked_note": NOTHING_PICKED,
        "status": "",
    }


def delete_message(
    services: Services, conv_id: str | None, picked: str | None, *, principal: Principal
) -> Updates:
    """Delete the picked message only."""
    return _delete(services, conv_id, picked, False, principal)


def delete_from_here(
    services: Services, conv_id: str | None, picked: str | None, *, principal: Principal
) -> Updates:
    """Delete the picked message and every message after it."""
    return _delete(services, conv_id, picked, True, principal)


def branch(
    services: Services, conv_id: str | None, picked: str | None, *, principal: Principal
) -> Updates:
    """A new chat with the history up to the picked message, opened at once."""
    try:
        if not conv_id or not picked:
            raise ValidationError(NOTHING_PICKED)
        new = services.chat.branch(conv_id, picked, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {
        "conversation": conversation_update(services, new, principal=principal),
        "chatbot": _shown(services, new),
        "picked": None,
        "picked_note": NOTHING_PICKED,
        "status": f"Branched into a new chat ({len(new.messages)} messages).",
    }


__all__ = [
    "branch",
    "delete_from_here",
    "delete_message",
    "edit_message",
    "pick_message",
    "picked_note",
    "swipe_left",
    "swipe_right",
]
