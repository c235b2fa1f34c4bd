"""The chat screen's layout: agent and conversation pickers, the chat, the swipe arrows and
message tools under it, the message box.

Components and wiring only; ``handlers.py`` and ``message_handlers.py`` do the work. The agent
picker comes from the ``StudioContext``, so it follows agents created or deleted on other
screens by itself. The browser keeps the open agent and conversation (``gr.BrowserState``),
so a reload reopens them.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.chat import handlers, message_handlers
from ui.context import StudioContext
from ui.voice_chat.layout import build_voice_chat
from ui.wiring import runner, wire

# The chat's tool rows: small buttons that wrap on a phone instead of squeezing.
CSS = """
#chat-tools, #chat-message-tools { gap: 6px; flex-wrap: wrap; align-items: center; }
#chat-tools button, #chat-message-tools button { flex: 0 1 auto; min-width: 0; }
#chat-swipe-count { flex: 0 0 auto; min-width: 3.5em; text-align: center; }
#chat-swipe-count p { margin: 0; }
#chat-picked { flex: 1 1 16em; min-width: 12em; }
#chat-picked p { margin: 0; }
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
    build_voice_chat(ctx, c)
    _wire(ctx, c)
    _wire_tools(ctx, c)


def _tools(c: dict[str, Any]) -> None:
    """Swipes, continue and impersonate under the chat; then the picked message's tools."""
    with gr.Row(elem_id="chat-tools"):
        c["left"] = gr.Button("◀", elem_id="chat-swipe-left", size="sm", interactive=False)
        c["counter"] = gr.Markdown("", elem_id="chat-swipe-count")
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
    c["saved"] = gr.BrowserState(
        {"agent": None, "conversation": None}, storage_key="anima-chat-open"
    )


def _wire(ctx: StudioContext, c: dict[str, Any]) -> None:
    services = ctx.services

    def out(*names: str) -> dict[str, Any]:
        return {name: c[name] for name in names}

    listing = out("conversation", "chatbot", "status")
    wire(
        c["agent"].input,
        handlers.pick_agent,
        services,
        inputs=[c["agent"]],
        outputs=listing,
        as_user=True,
    )
    wire(
        c["conversation"].input,
        handlers.open_conversation,
        services,
        inputs=[c["conversation"]],
        outputs=out("chatbot", "user", "status"),
        as_user=True,
    )
    wire(
        c["new"].click,
        handlers.new_chat,
        services,
        inputs=[c["agent"], c["user"]],
        outputs=listing,
        as_user=True,
    )
    wire(
        [c["send"].click, c["text"].submit],
        handlers.send,
        services,
        inputs=[c["agent"], c["conversation"], c["user"], c["text"]],
        outputs=out("conversation", "chatbot", "text", "status"),
        as_user=True,
    )
    wire(
        c["regenerate"].click,
        handlers.regenerate,
        services,
        inputs=[c["conversation"]],
        outputs=out("chatbot", "status"),
        as_user=True,
    )
    wire(c["chatbot"].clear, handlers.clear, services, outputs=out("conversation", "status"))


def _bubble_index(evt: gr.SelectData) -> Any:
    return evt.index


def _edit_of(evt: gr.EditData) -> tuple[Any, Any]:
    return evt.index, evt.value


def _wire_tools(ctx: StudioContext, c: dict[str, Any]) -> None:
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
    on(edited.then, message_handlers.edit_message, [*conv, "clicked", "edited"], swiped)
    on(c["left"].click, message_handlers.swipe_left, conv, swiped)
    on(c["right"].click, message_handlers.swipe_right, conv, swiped)
    on(c["continue"].click, handlers.continue_reply, conv, swiped)
    on(c["impersonate"].click, handlers.impersonate, conv, out("text", "status"))
    on(c["delete"].click, message_handlers.delete_message, [*conv, "picked"], picked)
    on(c["delete_after"].click, message_handlers.delete_from_here, [*conv, "picked"], picked)
    on(c["branch"].click, message_handlers.branch, [*conv, "picked"], {**picked, **out(*conv)})
    # The arrows and the counter follow whatever the chat shows, once it settles.
    wire(
        c["chatbot"].change,
        message_handlers.swipe_controls,
        services,
        inputs=[c["conversation"]],
        outputs=out("counter", "left", "right"),
        trigger_mode="always_last",
        show_progress="hidden",
    )
    # A reload reopens what this browser had open.
    on(c["conversation"].change, handlers.remember, ["agent", *conv], out("saved"))
    restored = out("agent", "conversation", "chatbot", "user", "status")
    ctx.on_load(
        runner(handlers.restore, services, list(restored)),
        inputs=[c["saved"]],
        outputs=list(restored.values()),
    )
