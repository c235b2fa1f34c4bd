"""The chat screen's layout: agent and conversation pickers, the chat, the swipe arrows and
message tools under it, the message box.

Components and wiring only; ``handlers.py`` and ``message_handlers.py`` do the work. The agent
picker comes from the ``StudioContext``, so it follows agents created or deleted on other
screens by itself. The page's address keeps the open agent and conversation
(``?agent=...&chat=...``), so a reload reopens them; the address rather than browser storage,
because the chat is not the first tab and Gradio mounts a tab's components only once it is
opened, too late for the page's load event.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.chat import handlers, message_handlers
from ui.chat.group_layout import build_group_panel
from ui.chat.side_panel_layout import build_side_panel
from ui.common import principal_of
from ui.context import StudioContext
from ui.voice_chat.layout import build_voice_chat
from ui.wiring import pack, wire

# The chat's tool rows: small buttons that wrap on a phone instead of squeezing.
CSS = """
#chat-style { display: none; }
#chat-tools, #chat-message-tools { gap: 6px; flex-wrap: wrap; align-items: center; }
#chat-tools button, #chat-message-tools button { flex: 0 1 auto; min-width: 0; }
#chat-swipe-count { min-width: 3.5em; opacity: 1; cursor: default; }
#chat-picked { flex: 1 1 16em; min-width: 12em; }
#chat-picked p { margin: 0; }
@media (max-width: 640px) { #chat-picked { flex-basis: 100%; } }
"""


def build_chat_screen(ctx: StudioContext) -> None:
    """Lay out the screen inside the caller's ``gr.Tab`` and wire its events."""
    c: dict[str, Any] = {}
    gr.HTML(f"<style>{CSS}</style>", elem_id="chat-style", padding=False)
    with gr.Row(equal_height=True):
        c["agent"] = ctx.agent_picker(label="Agent", elem_id="chat-agent", scale=3)
        c["user"] = gr.Textbox(
            value="User",
            label="Your name",
            info="Used for {{user}} in new chats.",
            elem_id="chat-user",
            scale=2,
        )
        c["conversation"] = gr.Dropdown(
            choices=[],
            value=None,
            label="Conversation",
            info="Reopen an earlier chat.",
            elem_id="chat-conversation",
            scale=3,
        )
        c["new"] = gr.Button("New chat", elem_id="chat-new", scale=1)
    c["chatbot"] = gr.Chatbot(
        label="Chat",
        elem_id="chatbot",
        height=480,
        placeholder="Pick an agent, then press **New chat** or just write a message.",
        feedback_options=None,
        buttons=["copy"],
        group_consecutive_messages=False,  # a group chat's speakers each get their own bubble
        editable="all",
    )
    _tools(c)
    with gr.Row(equal_height=True):
        c["text"] = gr.Textbox(
            show_label=False,
            placeholder="Write a message and press Enter.",
            lines=1,
            max_lines=8,
            elem_id="chat-input",
            scale=6,
        )
        c["send"] = gr.Button("Send", variant="primary", elem_id="chat-send", scale=1)
        c["regenerate"] = gr.Button("Regenerate", elem_id="chat-regenerate", scale=1)
    c["status"] = gr.Markdown("", elem_id="chat-status")
    build_group_panel(ctx, c)  # "let X reply", group setup, chat files
    build_voice_chat(ctx, c)
    build_side_panel(ctx, c)
    shown = _wire(ctx, c)
    shown += _wire_tools(ctx, c)
    _follow_swipes(ctx, c, [*shown, c["voice_reply"]])


def _tools(c: dict[str, Any]) -> None:
    """Swipes, continue and impersonate under the chat; then the picked message's tools."""
    with gr.Row(elem_id="chat-tools"):
        c["left"] = gr.Button("◀", elem_id="chat-swipe-left", size="sm", interactive=False)
        c["counter"] = gr.Button("–", elem_id="chat-swipe-count", size="sm", interactive=False)
        c["right"] = gr.Button("▶", elem_id="chat-swipe-right", size="sm", interactive=False)
        c["continue"] = gr.Button("Continue", elem_id="chat-continue", size="sm")
        c["impersonate"] = gr.Button("Impersonate", elem_id="chat-impersonate", size="sm")
    with gr.Row(elem_id="chat-message-tools"):
        c["picked_note"] = gr.Markdown(message_handlers.NOTHING_PICKED, elem_id="chat-picked")
        c["delete"] = gr.Button("Delete", elem_id="chat-delete", size="sm")
        c["delete_after"] = gr.Button(
            "Delete from here", elem_id="chat-delete-after", size="sm", variant="stop"
        )
        c["branch"] = gr.Button("Branch from here", elem_id="chat-branch", size="sm")
    c["picked"] = gr.State(None)  # the id of the message delete and branch act on
    c["clicked"] = gr.State(None)  # the index of the bubble clicked or edited
    c["edited"] = gr.State("")


def _wire(ctx: StudioContext, c: dict[str, Any]) -> list[Any]:
    """Wire the chat itself; returns the events after which the chat shows something new."""
    services = ctx.services

    def out(*names: str) -> dict[str, Any]:
        return {name: c[name] for name in names}

    listing = out("conversation", "chatbot", "status")
    picked = wire(
        ctx.picked(c["agent"], "chat"),
        handlers.pick_agent,
        services,
        inputs=[c["agent"]],
        outputs=listing,
        as_user=True,
    )
    opened = wire(
        c["conversation"].input,
        handlers.open_conversation,
        services,
        inputs=[c["conversation"]],
        outputs=out("chatbot", "user", "status"),
        as_user=True,
    )
    started = wire(
        c["new"].click,
        handlers.new_chat,
        services,
        inputs=[c["agent"], c["user"]],
        outputs=listing,
        as_user=True,
    )
    sent = wire(
        [c["send"].click, c["text"].submit],
        handlers.send,
        services,
        inputs=[c["agent"], c["conversation"], c["user"], c["text"]],
        outputs=out("conversation", "chatbot", "text", "status"),
        as_user=True,
    )
    regenerated = wire(
        c["regenerate"].click,
        handlers.regenerate,
        services,
        inputs=[c["conversation"]],
        outputs=out("chatbot", "status"),
        as_user=True,
    )
    wire(c["chatbot"].clear, handlers.clear, services, outputs=out("conversation", "status"))
    return [picked, opened, started, sent, regenerated]


def _bubble_index(evt: gr.SelectData) -> Any:
    return evt.index


def _edit_of(evt: gr.EditData) -> tuple[Any, Any]:
    return evt.index, evt.value


def _wire_tools(ctx: StudioContext, c: dict[str, Any]) -> list[Any]:
    """Wire the message tools; returns the events after which the chat shows something new."""
    services = ctx.services

    def out(*names: str) -> dict[str, Any]:
        return {name: c[name] for name in names}

    def on(trigger: Any, fn: Any, inputs: list[str], outputs: dict[str, Any]) -> Any:
        return wire(trigger, fn, services, inputs=[c[n] for n in inputs], outputs=outputs)

    conv = ["conversation"]
    picked = out("chatbot", "picked", "picked_note", "status")
    swiped = out("chatbot", "status")
    # Gradio hands event data only to typed parameters: take it into plain state first.
    clicked = c["chatbot"].select(_bubble_index, outputs=[c["clicked"]])
    on(clicked.then, message_handlers.pick_message, [*conv, "clicked"], picked)
    edited = c["chatbot"].edit(_edit_of, outputs=[c["clicked"], c["edited"]])
    shown = [
        on(edited.then, message_handlers.edit_message, [*conv, "clicked", "edited"], swiped),
        on(c["left"].click, message_handlers.swipe_left, conv, swiped),
        on(c["right"].click, message_handlers.swipe_right, conv, swiped),
        on(c["continue"].click, handlers.continue_reply, conv, swiped),
        on(c["delete"].click, message_handlers.delete_message, [*conv, "picked"], picked),
        on(c["delete_after"].click, message_handlers.delete_from_here, [*conv, "picked"], picked),
        on(c["branch"].click, message_handlers.branch, [*conv, "picked"], {**picked, **out(*conv)}),
    ]
    on(c["impersonate"].click, handlers.impersonate, conv, out("text", "status"))
    _keep_in_address(ctx, c)
    return shown


KEEP_IN_ADDRESS = """
(agent, chat) => {
  const url = new URL(window.location.href);
  for (const [key, value] of [["agent", agent], ["chat", chat]]) {
    if (value) url.searchParams.set(key, value); else url.searchParams.delete(key);
  }
  window.history.replaceState(window.history.state, "", url);
}
"""


def _keep_in_address(ctx: StudioContext, c: dict[str, Any]) -> None:
    """The open agent and conversation go into the page's address; a load reopens them."""
    c["conversation"].change(
        None, inputs=[c["agent"], c["conversation"]], js=KEEP_IN_ADDRESS, queue=False
    )
    names = ("agent", "conversation", "chatbot", "user", "status", "counter", "left", "right")
    services = ctx.services

    def reopen(request: gr.Request) -> Any:
        query = request.query_params if request is not None else {}
        principal = principal_of(services, request)
        updates = handlers.restore(
            services, query.get("agent"), query.get("chat"), principal=principal
        )
        return pack(names, updates)

    reopen.handler = handlers.restore  # type: ignore[attr-defined]
    ctx.on_load(reopen, outputs=[c[name] for name in names])


def _follow_swipes(ctx: StudioContext, c: dict[str, Any], events: list[Any]) -> None:
    """After each event that changes what the chat shows (once it has finished, so a reply
    is stored), the arrows and the counter read the last message's versions afresh."""
    controls = {name: c[name] for name in ("counter", "left", "right")}
    for event in events:
        wire(
            event.then,
            handlers.swipe_controls,
            ctx.services,
            inputs=[c["conversation"]],
            outputs=controls,
            show_progress="hidden",
        )
