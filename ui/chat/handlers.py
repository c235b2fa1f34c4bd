"""The chat screen's handlers: talk to an agent, reopen earlier chats, regenerate, continue
or impersonate (changing stored messages is in ``ui.chat.message_handlers``).

Replies stream: ``send``, ``regenerate`` and ``continue_reply`` are generators that yield the
conversation with the reply as far as the model has written it, so the bubble grows token by
token; ``impersonate`` streams its draft into the message box instead. The stored
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
from ui.common import agent_choices, keep_choice, show_error
from ui.panels.knowledge.handlers import sources_markdown, trace_sources
from ui.wiring import Updates

Message = dict[str, Any]
NO_SWIPES = {
    "counter": "–",
    "left": gr.update(interactive=False),
    "right": gr.update(interactive=False),
}


def conversation_label(conv: ConversationView, titles: dict[str, str] | None = None) -> str:
    """The chat's title and time; a branch names the chat it came from (``titles``: id ->
    title of the agent's other chats)."""
    title = conv.title or "New chat"
    if conv.parent_id is not None:
        parent = (titles or {}).get(conv.parent_id) or "a deleted chat"
        title = f"↳ branch of {parent}"
    # Started before chats had owners: everyone sees it, and the picker says so.
    shared = " · shared" if conv.shared else ""
    return f"{title} · {conv.updated_at:%Y-%m-%d %H:%M}{shared}"


def chat_rows(
    conv: ConversationView, sources: dict[str, str] | None = None
) -> list[tuple[Message, str | None]]:
    """Each Chatbot bubble with the id of the stored message it shows (None: a sources
    bubble), so a click on the n-th bubble finds its message."""
    out: list[tuple[Message, str | None]] = []
    for m in conv.messages:
        out.append(({"role": m.role, "content": speaker_text(m.name, m.content)}, m.id))
        if sources and m.id in sources:
            out.append((sources_bubble(sources[m.id]), None))
    return out


def chat_messages(conv: ConversationView, sources: dict[str, str] | None = None) -> list[Message]:
    """The conversation in the Chatbot's message format (``role`` + ``content``).

    ``sources`` (message id -> Markdown) adds a collapsible "Sources" bubble under each
    grounded reply (from the agent's knowledge bases).
    """
    return [bubble for bubble, _ in chat_rows(conv, sources)]


def sources_bubble(markdown: str) -> Message:
    return {"role": "assistant", "content": markdown, "metadata": {"title": "Sources"}}


def stream_into(
    base: list[Message], reply: ReplyStream, prefix: str = ""
) -> Iterator[list[Message]]:
    """``base`` plus the reply so far (after ``prefix``: a reply being continued), once per
    text delta."""
    text = prefix
    for delta in reply:
        text += delta
        yield [*base, {"role": "assistant", "content": speaker_text(reply.name, text)}]


def conversation_choices(
    services: Services, agent_id: str, *, principal: Principal
) -> list[tuple[str, str]]:
    chats = services.chat.list_conversations(agent_id, principal=principal)
    titles = {c.id: c.title or "New chat" for c in chats}
    return [(conversation_label(c, titles), c.id) for c in chats]


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


def continue_reply(
    services: Services, conv_id: str | None, *, principal: Principal
) -> Iterator[Updates]:
    """Write more of the last reply, streamed onto its bubble."""
    try:
        if not conv_id:
            raise ValidationError("open or start a conversation first")
        reply = services.chat.continue_reply(conv_id, principal=principal)
        conv = services.chat.get_conversation(conv_id, principal=principal)
        earlier = conv.model_copy(update={"messages": conv.messages[:-1]})
        base = chat_messages(earlier, trace_sources(services, conv))
        partial = conv.messages[-1].content if conv.messages else ""
    except AnimaError as exc:
        yield {"status": show_error(exc)}
        return
    yield {"chatbot": [*base, {"role": "assistant", "content": partial}], "status": ""}
    yield from stream_reply(base, reply, prefix=partial)


def impersonate(
    services: Services, conv_id: str | None, *, principal: Principal
) -> Iterator[Updates]:
    """A draft of the user's next message, streamed into the message box (not sent)."""
    try:
        if not conv_id:
            raise ValidationError("open or start a conversation first")
        reply = services.chat.impersonate(conv_id, principal=principal)
    except AnimaError as exc:
        yield {"status": show_error(exc)}
        return
    text = ""
    yield {"text": "", "status": ""}
    try:
        for delta in reply:
            text += delta
            yield {"text": text}
    except AnimaError as exc:
        yield {"status": show_error(exc)}
        return
    if not text.strip():
        yield {"status": show_error("The model wrote no draft: try again.")}
    else:
        yield {"text": text.strip()}


def restore(
    services: Services, agent_id: str | None, conv_id: str | None, *, principal: Principal
) -> Updates:
    """On page load: reopen the agent and conversation named in the page's address (the
    chat keeps them there), if they still exist."""
    agents = agent_choices(services, principal)
    agent_id = keep_choice(agent_id, agents)
    if agent_id is None:
        return {}
    try:
        choices = conversation_choices(services, agent_id, principal=principal)
    except AnimaError:
        return {}
    conv_id = keep_choice(conv_id, choices)
    updates: Updates = {
        "agent": gr.update(choices=agents, value=agent_id),
        "conversation": gr.update(choices=choices, value=conv_id),
    }
    if conv_id is not None:
        updates.update(open_conversation(services, conv_id, principal=principal))
        updates.update(swipe_controls(services, conv_id, principal=principal))
    return updates


def swipe_controls(services: Services, conv_id: str | None, *, principal: Principal) -> Updates:
    """The counter ("2/3") and arrows for the last message's versions."""
    if not conv_id:
        return NO_SWIPES
    try:
        conv = services.chat.get_conversation(conv_id, principal=principal)
    except AnimaError:
        return NO_SWIPES
    last = conv.messages[-1] if conv.messages else None
    if last is None or last.role != "assistant":
        return NO_SWIPES
    more = last.selected < len(last.versions) - 1 or len(conv.messages) > 1
    return {
        "counter": f"{last.selected + 1}/{len(last.versions)}",
        "left": gr.update(interactive=last.selected > 0),
        "right": gr.update(interactive=more),
    }


def clear(services: Services) -> Updates:
    """The chat's own clear button only clears the view: the stored chat stays listed, and
    the next message starts a new one."""
    return {"conversation": gr.update(value=None), "status": ""}


def stream_reply(base: list[Message], reply: ReplyStream, prefix: str = "") -> Iterator[Updates]:
    """The chat as the reply grows; a failed model or an empty reply is reported plainly."""
    messages = base
    try:
        for messages in stream_into(base, reply, prefix):
            yield {"chatbot": messages}
    except AnimaError as exc:
        yield {"chatbot": messages, "status": show_error(exc)}
        return
    if reply.message is None and not reply.waiting:
        note = show_error("The model returned an empty reply: try Regenerate.")
        yield {"chatbot": messages, "status": note}
    elif reply.sources:
        yield {"chatbot": [*messages, sources_bubble(sources_markdown(reply.sources))]}
