"""The chat screen's handlers: talk to an agent, reopen earlier chats, regenerate a reply.

Replies stream: ``send`` and ``regenerate`` are generators that yield the conversation with
the reply as far as the model has written it, so the bubble grows token by token. The stored
conversation (not the widget) is the source of truth: every turn starts from what the service
holds. Handlers pass the ``principal`` chatting on to the chat service, which decides what they
may do: each browser lists and opens only its own chats (its wallet's, or its visitor cookie's).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from agents.chat import ConversationView, ReplyStream
from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from ui.chat.group_names import speaker_text
from ui.common import show_error
from ui.panels.knowledge.handlers import sources_markdown, trace_sources
from ui.wiring import Updates

Message = dict[str, Any]


def conversation_label(conv: ConversationView) -> str:
    title = conv.title or "New chat"
    # Started before chats had owners: everyone sees it, and the picker says so.
    shared = " · shared" if conv.shared else ""
    return f"{title} · {conv.updated_at:%Y-%m-%d %H:%M}{shared}"


def chat_messages(conv: ConversationView, sources: dict[str, str] | None = None) -> list[Message]:
    """The conversation in the Chatbot's message format (``role`` + ``content``).

    ``sources`` (message id -> Markdown) adds a collapsible "Sources" bubble under each
    grounded reply (from the agent's knowledge bases).
    """
    out: list[Message] = []
    for m in conv.messages:
        out.append({"role": m.role, "content": speaker_text(m.name, m.content)})
        if sources and m.id in sources:
            out.append(sources_bubble(sources[m.id]))
    return out


def sources_bubble(markdown: str) -> Message:
    return {"role": "assistant", "content": markdown, "metadata": {"title": "Sources"}}


def stream_into(base: list[Message], reply: ReplyStream) -> Iterator[list[Message]]:
    """``base`` plus the reply so far, once per text delta."""
    text = ""
    for delta in reply:
        text += delta
        yield [*base, {"role": "assistant", "content": speaker_text(reply.name, text)}]


def conversation_choices(
    services: Services, agent_id: str, *, principal: Principal
) -> list[tuple[str, str]]:
    chats = services.chat.list_conversations(agent_id, principal=principal)
    return [(conversation_label(c), c.id) for c in chats]


def conversation_update(services: Services, conv: ConversationView, *, principal: Principal) -> Any:
    """The conversation picker listing the agent's chats, ``conv`` picked."""
    choices = conversation_choices(services, conv.agent_id, principal=principal)
    return gr.update(choices=choices, value=conv.id)


def pick_agent(services: Services, agent_id: str | None, *, principal: Principal) -> Updates:
    """The user picked an agent: list its chats, show none yet."""
    cleared = {"conversation": gr.update(choices=[], value=None), "chatbot": [], "status": ""}
    if not agent_id:
        return cleared
    try:
        choices = conversation_choices(services, agent_id, principal=principal)
    except AnimaError as exc:
        return {**cleared, "status": show_error(exc)}
    return {**cleared, "conversation": gr.update(choices=choices, value=None)}


def open_conversation(services: Services, conv_id: str | None, *, principal: Principal) -> Updates:
    if not conv_id:
        return {"chatbot": [], "status": ""}
    try:
        conv = services.chat.get_conversation(conv_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    messages = chat_messages(conv, trace_sources(services, conv))
    return {"chatbot": messages, "user": conv.user_name, "status": ""}


def new_chat(
    services: Services, agent_id: str | None, user_name: str, *, principal: Principal
) -> Updates:
    try:
        if not agent_id:
            raise ValidationError("pick an agent first")
        conv = services.chat.create_conversation(agent_id, user_name, principal=principal)
        choices = conversation_choices(services, agent_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {
        "conversation": gr.update(choices=choices, value=conv.id),
        "chatbot": chat_messages(conv),
        "status": "",
    }


def send(
    services: Services,
    agent_id: str | None,
    conv_id: str | None,
    user_name: str,
    content: str,
    *,
    principal: Principal,
) -> Iterator[Updates]:
    """Show the message at once, then the reply as it streams in."""
    try:
        if not (content or "").strip():
            raise ValidationError("write a message first")
        if not conv_id:
            if not agent_id:
                raise ValidationError("pick an agent first")
            conv_id = services.chat.create_conversation(agent_id, user_name, principal=principal).id
        conv = services.chat.get_conversation(conv_id, principal=principal)
        base = chat_messages(conv, trace_sources(services, conv))
    except AnimaError as exc:
        yield {"status": show_error(exc)}
        return
    # Show the message at once: the first reply may wait for the model to load.
    shown = [*base, {"role": "user", "content": content}]
    yield {"chatbot": shown, "text": "", "status": ""}
    try:
        reply = services.chat.send(conv_id, content, principal=principal)
    except AnimaError as exc:
        yield _refused(services, conv_id, content, show_error(exc), principal=principal)
        return
    # Relist: the first message gives a chat its title.
    conv = services.chat.get_conversation(conv_id, principal=principal)
    yield {
        "conversation": conversation_update(services, conv, principal=principal),
        "chatbot": shown,
    }
    yield from stream_reply(shown, reply)


def _refused(
    services: Services, conv_id: str, content: str, note: str, *, principal: Principal
) -> Updates:
    """The stored chat after a refused message; the text comes back unless it was kept."""
    conv = services.chat.get_conversation(conv_id, principal=principal)
    stored = chat_messages(conv)
    kept = bool(stored) and stored[-1] == {"role": "user", "content": content}
    conversation = conversation_update(services, conv, principal=principal)
    updates = {"conversation": conversation, "chatbot": stored}
    return {**updates, "status": note} if kept else {**updates, "text": content, "status": note}


def regenerate(
    services: Services, conv_id: str | None, *, principal: Principal
) -> Iterator[Updates]:
    """Replace the last reply with a new one, streamed."""
    try:
        if not conv_id:
            raise ValidationError("open or start a conversation first")
        reply = services.chat.regenerate(conv_id, principal=principal)
        conv = services.chat.get_conversation(conv_id, principal=principal)
        earlier = conv.model_copy(update={"messages": conv.messages[:-1]})
        base = chat_messages(earlier, trace_sources(services, conv))
    except AnimaError as exc:
        yield {"status": show_error(exc)}
        return
    yield {"chatbot": base, "status": ""}
    yield from stream_reply(base, reply)


def clear(services: Services) -> Updates:
    """The chat's own clear button only clears the view: the stored chat stays listed, and
    the next message starts a new one."""
    return {"conversation": gr.update(value=None), "status": ""}


def stream_reply(base: list[Message], reply: ReplyStream) -> Iterator[Updates]:
    """The chat as the reply grows; a failed model or an empty reply is reported plainly."""
    messages = base
    try:
        for messages in stream_into(base, reply):
            yield {"chatbot": messages}
    except AnimaError as exc:
        yield {"chatbot": messages, "status": show_error(exc)}
        return
    if reply.message is None and not reply.waiting:
        note = show_error("The model returned an empty reply: try Regenerate.")
        yield {"chatbot": messages, "status": note}
    elif reply.sources:
        yield {"chatbot": [*messages, sources_bubble(sources_markdown(reply.sources))]}
