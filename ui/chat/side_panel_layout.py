"""The chat's side panel: persona picker and editor, author's note, memory (summary, pins).

Laid out under the chat as three columns that stack on a phone; components and wiring only,
``side_panel_handlers.py`` does the work. It follows the chat screen's conversation picker:
opening or starting a chat loads that chat's settings.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from agents.memory import MAX_NOTE_DEPTH, MAX_NOTE_FREQUENCY
from container import Services
from ui.chat import side_panel_handlers as handlers
from ui.context import StudioContext
from ui.wiring import runner, wire

COLUMN_MIN_WIDTH = 300
BUTTON_MIN_WIDTH = 80
NUMBER_MIN_WIDTH = 100


def build_side_panel(ctx: StudioContext, chat: dict[str, Any]) -> None:
    """Add the panel to the chat screen; ``chat`` holds the screen's components by name."""
    p: dict[str, Any] = {}
    with gr.Accordion("Persona, author's note and memory", open=True, elem_id="chat-side-panel"):
        with gr.Row(equal_height=False):
            with gr.Column(min_width=COLUMN_MIN_WIDTH, elem_id="chat-persona-column"):
                _persona_column(p)
            with gr.Column(min_width=COLUMN_MIN_WIDTH, elem_id="chat-note-column"):
                _note_column(p)
            with gr.Column(min_width=COLUMN_MIN_WIDTH, elem_id="chat-memory-column"):
                _memory_column(p)
        p["panel_status"] = gr.Markdown("", elem_id="chat-panel-status")
        with gr.Accordion("The prompt the agent reads next", open=False):
            p["show_prompt"] = gr.Button("Show prompt", size="sm", elem_id="chat-show-prompt")
            p["prompt"] = gr.Textbox(
                show_label=False, lines=8, max_lines=30, interactive=False, elem_id="chat-prompt"
            )
    _wire(ctx, chat, p)


def _persona_column(p: dict[str, Any]) -> None:
    gr.Markdown("**Persona**: who you are in this chat (`{{user}}`).")
    p["persona"] = gr.Dropdown(
        choices=[], value=None, label="Speak as", elem_id="chat-persona", allow_custom_value=False
    )
    p["persona_name"] = gr.Textbox(label="Name", max_length=100, elem_id="chat-persona-name")
    p["persona_description"] = gr.Textbox(
        label="Description",
        lines=3,
        max_lines=8,
        max_length=8000,
        placeholder="What the agent should know about you.",
        elem_id="chat-persona-description",
    )
    p["persona_avatar"] = gr.Image(
        label="Avatar (optional)",
        type="filepath",
        sources=["upload"],
        height=120,
        elem_id="chat-persona-avatar",
    )
    p["persona_default"] = gr.Checkbox(
        label="Default for new chats", elem_id="chat-persona-default"
    )
    with gr.Row():  # narrow enough to stay one row on a phone
        p["persona_save"] = gr.Button(
            "Save", size="sm", min_width=BUTTON_MIN_WIDTH, elem_id="chat-persona-save"
        )
        p["persona_new"] = gr.Button(
            "Save as new", size="sm", min_width=BUTTON_MIN_WIDTH, elem_id="chat-persona-new"
        )
        p["persona_delete"] = gr.Button(
            "Delete",
            size="sm",
            variant="stop",
            min_width=BUTTON_MIN_WIDTH,
            elem_id="chat-persona-delete",
        )


def _note_column(p: dict[str, Any]) -> None:
    gr.Markdown("**Author's note**: a hint put into the chat near its end.")
    p["note"] = gr.Textbox(
        label="Note",
        lines=3,
        max_lines=8,
        max_length=4000,
        placeholder="[Style: short, vivid replies.]",
        elem_id="chat-note",
    )
    with gr.Row():
        p["note_depth"] = gr.Number(
            value=4,
            label="Depth",
            info="Messages from the end",
            minimum=0,
            maximum=MAX_NOTE_DEPTH,
            precision=0,
            min_width=NUMBER_MIN_WIDTH,
            elem_id="chat-note-depth",
        )
        p["note_frequency"] = gr.Number(
            value=1,
            label="Every",
            info="user turns (0: off)",
            minimum=0,
            maximum=MAX_NOTE_FREQUENCY,
            precision=0,
            min_width=NUMBER_MIN_WIDTH,
            elem_id="chat-note-frequency",
        )
    p["note_save"] = gr.Button("Save note", size="sm", elem_id="chat-note-save")


def _memory_column(p: dict[str, Any]) -> None:
    gr.Markdown("**Memory**: what the agent remembers of turns that no longer fit.")
    p["summary"] = gr.Textbox(
        label="Summary",
        lines=3,
        max_lines=10,
        max_length=8000,
        placeholder="Written by the agent once the chat outgrows its context.",
        elem_id="chat-summary",
    )
    p["summary_pinned"] = gr.Checkbox(
        label="Pin the summary (the agent stops rewriting it)", elem_id="chat-summary-pinned"
    )
    p["summary_save"] = gr.Button("Save summary", size="sm", elem_id="chat-summary-save")
    p["pin_choice"] = gr.Dropdown(choices=[], label="Pin a message", elem_id="chat-pin-choice")
    p["pin"] = gr.Button("Pin", size="sm", elem_id="chat-pin")
    p["pinned"] = gr.Dropdown(
        choices=[], label="Pinned (always in the prompt)", elem_id="chat-pinned"
    )
    p["unpin"] = gr.Button("Unpin", size="sm", elem_id="chat-unpin")


def _wire(ctx: StudioContext, chat: dict[str, Any], p: dict[str, Any]) -> None:
    conversation = chat["conversation"]
    _wire_loading(ctx, conversation, p)
    _wire_persona(ctx.services, conversation, p)
    _wire_note_and_summary(ctx.services, conversation, p)
    _wire_pins(ctx.services, conversation, p)
    wire(
        p["show_prompt"].click,
        handlers.preview_prompt,
        ctx.services,
        inputs=[conversation],
        outputs=_named(p, "prompt", "panel_status"),
        as_user=True,
    )


def _named(p: dict[str, Any], *names: str) -> dict[str, Any]:
    """The panel's components ``names``, as a handler's named outputs."""
    return {name: p[name] for name in names}


def _wire_loading(ctx: StudioContext, conversation: Any, p: dict[str, Any]) -> None:
    """Opening or starting a chat, or opening the page, loads the chat's panel."""
    loaded = _named(
        p,
        "persona",
        "note",
        "note_depth",
        "note_frequency",
        "summary",
        "summary_pinned",
        "pin_choice",
        "pinned",
        "panel_status",
    )
    wire(
        conversation.change,
        handlers.load_panel,
        ctx.services,
        inputs=[conversation, p["persona"]],
        outputs=loaded,
        as_user=True,
    )
    # Personas made in another tab or browser show up whenever a page opens.
    load = runner(handlers.load_panel, ctx.services, list(loaded), as_user=True)
    ctx.on_load(load, [conversation, p["persona"]], list(loaded.values()))


def _wire_persona(services: Services, conversation: Any, p: dict[str, Any]) -> None:
    editor = _named(p, "persona_name", "persona_description", "persona_default", "panel_status")
    wire(
        p["persona"].input,
        handlers.pick_persona,
        services,
        inputs=[conversation, p["persona"]],
        outputs=editor,
        as_user=True,
    )
    persona_fields = [
        conversation,
        p["persona"],
        p["persona_name"],
        p["persona_description"],
        p["persona_avatar"],
        p["persona_default"],
    ]
    saved = _named(p, "persona", "persona_avatar", "persona_default", "panel_status")
    for button, as_new in ((p["persona_save"], False), (p["persona_new"], True)):
        wire(
            button.click,
            handlers.save_persona,
            services,
            inputs=[*persona_fields, gr.State(as_new)],
            outputs=saved,
            as_user=True,
        )
    wire(
        p["persona_delete"].click,
        handlers.delete_persona,
        services,
        inputs=[p["persona"]],
        outputs={**editor, "persona": p["persona"]},
        as_user=True,
    )


def _wire_note_and_summary(services: Services, conversation: Any, p: dict[str, Any]) -> None:
    wire(
        p["note_save"].click,
        handlers.save_note,
        services,
        inputs=[conversation, p["note"], p["note_depth"], p["note_frequency"]],
        outputs=_named(p, "panel_status"),
        as_user=True,
    )
    wire(
        p["summary_save"].click,
        handlers.save_summary,
        services,
        inputs=[conversation, p["summary"], p["summary_pinned"]],
        outputs=_named(p, "panel_status"),
        as_user=True,
    )


def _wire_pins(services: Services, conversation: Any, p: dict[str, Any]) -> None:
    pins = _named(p, "pin_choice", "pinned", "panel_status")
    for button, choice, pinned in ((p["pin"], "pin_choice", True), (p["unpin"], "pinned", False)):
        wire(
            button.click,
            handlers.pin,
            services,
            inputs=[conversation, p[choice], gr.State(pinned)],
            outputs=pins,
            as_user=True,
        )
    wire(
        p["pin_choice"].focus,
        handlers.refresh_pins,
        services,
        inputs=[conversation],
        outputs=pins,
        as_user=True,
    )
