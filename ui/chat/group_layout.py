"""The chat screen's group chat controls: "let X reply" under the chat (group chats only),
and the group setup in a panel beside the chat files.

Components and wiring only; ``group_handlers.py`` does the work. ``c`` is the chat screen's
components, which these controls read and update (the agent, conversation and chat).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.chat import group_handlers as handlers
from ui.chat.transfer_layout import build_transfer, wire_transfer
from ui.context import StudioContext
from ui.wiring import wire


def build_group_panel(ctx: StudioContext, c: dict[str, Any]) -> None:
    """Everything group chats and chat files add to the chat screen, under the message box."""
    build_let_reply(ctx, c)
    with gr.Accordion("Group chat and chat files", open=False, elem_id="chat-group-files"):
        build_group_setup(ctx, c)
        build_transfer(ctx, c)
    wire_group(ctx, c)
    wire_transfer(ctx, c)


def build_let_reply(ctx: StudioContext, c: dict[str, Any]) -> None:
    """The "let X reply" row, shown while a group chat is open."""
    with gr.Row(equal_height=True, visible=False, elem_id="group-let-reply") as row:
        c["speaker_row"] = row
        c["speaker"] = gr.Dropdown(
            choices=[],
            value=None,
            label="Who replies",
            elem_id="group-speaker",
            scale=3,
            min_width=160,
        )
        c["let_reply"] = gr.Button("Let reply", elem_id="group-let", scale=1, min_width=100)


def build_group_setup(ctx: StudioContext, c: dict[str, Any]) -> None:
    """Several agents, a reply order, and a button that starts the group chat."""
    with gr.Row(equal_height=True):
        c["members"] = ctx.agent_picker(
            label="Agents, in speaking order",
            multiselect=True,
            elem_id="group-members",
            scale=3,
            min_width=220,
        )
        c["reply_order"] = gr.Radio(
            choices=handlers.REPLY_ORDER_CHOICES,
            value="round_robin",
            label="Who answers",
            elem_id="group-order",
            scale=2,
            min_width=220,
        )
        c["start_group"] = gr.Button(
            "Start group chat", variant="primary", elem_id="group-start", scale=1, min_width=140
        )


def wire_group(ctx: StudioContext, c: dict[str, Any]) -> None:
    services = ctx.services

    def out(*names: str) -> dict[str, Any]:
        return {name: c[name] for name in names}

    wire(
        c["conversation"].change,
        handlers.show_speakers,
        services,
        inputs=[c["conversation"]],
        outputs=out("speaker", "speaker_row"),
        as_user=True,
    )
    wire(
        c["start_group"].click,
        handlers.start_group,
        services,
        inputs=[c["members"], c["reply_order"], c["user"]],
        outputs=out("agent", "conversation", "chatbot", "status"),
        as_user=True,
    )
    wire(
        c["let_reply"].click,
        handlers.let_reply,
        services,
        inputs=[c["conversation"], c["speaker"]],
        outputs=out("chatbot", "status"),
        as_user=True,
    )
