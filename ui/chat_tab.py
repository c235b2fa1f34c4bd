"""The Chat tab: talk to an agent, reopen earlier chats, regenerate the last reply.

Replies stream: each handler is a generator that yields the conversation with the reply as
far as the model has written it, so the bubble grows token by token. The stored conversation
(not the widget) is the source of truth: every turn starts from what the service holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from agents.chat import ConversationView, ReplyStream
from container import Services
from core.errors import AnimaError, ValidationError
from ui.common import agent_choices, principal_of, show_error
from ui.knowledge_panel import sources_markdown, trace_sources
from ui.voice_chat import build_voice_chat

Message = dict[str, Any]


@dataclass
class ChatTab:
    """What the studio needs to keep other tabs in step with this one."""

    agent_picker: gr.Dropdown


def conversation_label(conv: ConversationView) -> str:
    title = conv.title or "New chat"
    return f"{title} · {conv.updated_at:%Y-%m-%d %H:%M}"


def chat_messages(conv: ConversationView, sources: dict[str, str] | None = None) -> list[Message]:
    """The conversation in the Chatbot's message format (``role`` + ``content``).

    ``sources`` (message id -> Markdown) adds a collapsible "Sources" bubble under each
    grounded reply (knowledge bases).
    """
    out: list[Message] = []
    for m in conv.messages:
        out.append({"role": m.role, "content": m.content})
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
        yield [*base, {"role": "assistant", "content": text}]


def build_chat_tab(services: Services) -> ChatTab:
    """Lay out the tab inside the caller's ``gr.Tab`` and wire its events."""
    with gr.Row(equal_height=True):
        agent = gr.Dropdown(
            choices=agent_choices(services),
            value=None,
            label="Agent",
            elem_id="chat-agent",
            scale=3,
        )
        user = gr.Textbox(
            value="User",
            label="Your name",
            info="Used for {{user}} in new chats.",
            elem_id="chat-user",
            scale=2,
        )
        conversation = gr.Dropdown(
            choices=[],
            value=None,
            label="Conversation",
            info="Reopen an earlier chat.",
            elem_id="chat-conversation",
            scale=3,
        )
        new_btn = gr.Button("New chat", elem_id="chat-new", scale=1)
    chatbot = gr.Chatbot(
        label="Chat",
        elem_id="chatbot",
        height=480,
        placeholder="Pick an agent, then press **New chat** or just write a message.",
        feedback_options=None,
        buttons=["copy"],
    )
    with gr.Row(equal_height=True):
        text = gr.Textbox(
            show_label=False,
            placeholder="Write a message and press Enter.",
            lines=1,
            max_lines=8,
            elem_id="chat-input",
            scale=6,
        )
        send_btn = gr.Button("Send", variant="primary", elem_id="chat-send", scale=1)
        regen_btn = gr.Button("Regenerate", elem_id="chat-regenerate", scale=1)
    status = gr.Markdown("", elem_id="chat-status")
    build_voice_chat(services, agent, conversation, user, chatbot, status)

    def conversation_choices(agent_id: str) -> list[tuple[str, str]]:
        return [(conversation_label(c), c.id) for c in services.chat.list_conversations(agent_id)]

    def conversation_update(conv: ConversationView) -> Any:
        return gr.update(choices=conversation_choices(conv.agent_id), value=conv.id)

    def pick_agent(agent_id: str | None) -> list[Any]:
        if not agent_id:
            return [gr.update(choices=[], value=None), [], ""]
        try:
            choices = conversation_choices(agent_id)
        except AnimaError as exc:
            return [gr.update(choices=[], value=None), [], show_error(exc)]
        return [gr.update(choices=choices, value=None), [], ""]

    def open_conversation(conv_id: str | None) -> list[Any]:
        if not conv_id:
            return [[], gr.skip(), ""]
        try:
            conv = services.chat.get_conversation(conv_id)
        except AnimaError as exc:
            return [gr.skip(), gr.skip(), show_error(exc)]
        return [chat_messages(conv, trace_sources(services, conv)), conv.user_name, ""]

    def new_chat(agent_id: str | None, user_name: str) -> list[Any]:
        try:
            if not agent_id:
                raise ValidationError("pick an agent first")
            conv = services.chat.create_conversation(agent_id, user_name)
            choices = conversation_choices(agent_id)
        except AnimaError as exc:
            return [gr.skip(), gr.skip(), show_error(exc)]
        return [gr.update(choices=choices, value=conv.id), chat_messages(conv), ""]

    def send(
        agent_id: str | None,
        conv_id: str | None,
        user_name: str,
        content: str,
        request: gr.Request,
    ) -> Iterator[list[Any]]:
        try:
            if not (content or "").strip():
                raise ValidationError("write a message first")
            if not conv_id:
                if not agent_id:
                    raise ValidationError("pick an agent first")
                conv_id = services.chat.create_conversation(agent_id, user_name).id
            conv = services.chat.get_conversation(conv_id)
            base = chat_messages(conv, trace_sources(services, conv))
        except AnimaError as exc:
            yield [gr.skip(), gr.skip(), gr.skip(), show_error(exc)]
            return
        # Show the message at once: the first reply may wait for the model to load.
        shown = [*base, {"role": "user", "content": content}]
        yield [gr.skip(), shown, "", ""]
        try:
            reply = services.chat.send(conv_id, content, principal=principal_of(services, request))
        except AnimaError as exc:
            note = show_error(exc)
            conv = services.chat.get_conversation(conv_id)
            stored = chat_messages(conv)
            kept = bool(stored) and stored[-1] == {"role": "user", "content": content}
            yield [conversation_update(conv), stored, gr.skip() if kept else content, note]
            return
        # Relist: the first message gives a chat its title.
        conv = services.chat.get_conversation(conv_id)
        yield [conversation_update(conv), shown, gr.skip(), gr.skip()]
        yield from _stream_reply(
            shown, reply, lambda msgs, note: [gr.skip(), msgs, gr.skip(), note]
        )

    def regenerate(conv_id: str | None, request: gr.Request) -> Iterator[list[Any]]:
        try:
            if not conv_id:
                raise ValidationError("open or start a conversation first")
            reply = services.chat.regenerate(conv_id, principal=principal_of(services, request))
            conv = services.chat.get_conversation(conv_id)
            earlier = conv.model_copy(update={"messages": conv.messages[:-1]})
            base = chat_messages(earlier, trace_sources(services, conv))
        except AnimaError as exc:
            yield [gr.skip(), show_error(exc)]
            return
        yield [base, ""]
        yield from _stream_reply(base, reply, lambda msgs, note: [msgs, note])

    agent.input(pick_agent, inputs=[agent], outputs=[conversation, chatbot, status])
    conversation.input(open_conversation, inputs=[conversation], outputs=[chatbot, user, status])
    new_btn.click(new_chat, inputs=[agent, user], outputs=[conversation, chatbot, status])
    gr.on(
        triggers=[send_btn.click, text.submit],
        fn=send,
        inputs=[agent, conversation, user, text],
        outputs=[conversation, chatbot, text, status],
    )
    regen_btn.click(regenerate, inputs=[conversation], outputs=[chatbot, status])
    # The chat's own clear button only clears the view: the stored chat stays listed, and the
    # next message starts a new one.
    chatbot.clear(lambda: (gr.update(value=None), ""), outputs=[conversation, status])
    return ChatTab(agent_picker=agent)


def _stream_reply(
    base: list[Message], reply: ReplyStream, pack: Callable[[list[Message], Any], list[Any]]
) -> Iterator[list[Any]]:
    """Yield ``pack(messages, status)`` as the reply grows; report a failed model plainly."""
    messages = base
    try:
        for messages in stream_into(base, reply):
            yield pack(messages, gr.skip())
    except AnimaError as exc:
        yield pack(messages, show_error(exc))
        return
    if reply.message is None:
        yield pack(messages, show_error("The model returned an empty reply: try Regenerate."))
    elif reply.sources:
        yield pack([*messages, sources_bubble(sources_markdown(reply.sources))], gr.skip())
