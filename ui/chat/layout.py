"""The chat screen's layout: agent and conversation pickers, the chat, the message box.

Components and wiring only; ``handlers.py`` does the work. The agent picker comes from the
``StudioContext``, so it follows agents created or deleted on other screens by itself.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.chat import handlers
from ui.chat.side_panel_layout import build_side_panel
from ui.context import StudioContext
from ui.voice_chat.layout import build_voice_chat
from ui.wiring import wire


def build_chat_screen(ctx: StudioContext) -> None:
    """Lay out the screen inside the caller's ``gr.Tab`` and wire its events."""
    c: dict[str, Any] = {}
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
    )
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
    build_side_panel(ctx, c)
    _wire(ctx, c)


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
