"""The editor's form fields: the Card tab (every character card field) and the Generation tab.

Components only; each is stored in the screen's component dict under its form key
(``form.FORM_KEYS``), the names the handlers return.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from agents.schema import GenerationSettings
from ui import widgets
from ui.agents.greetings import greetings_list

Components = dict[str, Any]


def _text(c: Components, key: str, label: str, elem_id: str, **options: Any) -> None:
    c[key] = gr.Textbox(label=label, elem_id=elem_id, **options)


def card_fields(c: Components) -> None:
    """The character card's fields, in the order a card editor shows them."""
    with gr.Row(equal_height=True):
        _text(c, "name", "Name", "agent-name", scale=2, min_width=200)
        _text(
            c,
            "nickname",
            "Nickname",
            "agent-nickname",
            info="Used for {{char}} if set.",
            min_width=160,
        )
    _text(c, "description", "Description", "agent-description", lines=4, max_lines=20)
    _text(c, "personality", "Personality", "agent-personality", lines=2, max_lines=10)
    _text(c, "scenario", "Scenario", "agent-scenario", lines=2, max_lines=10)
    _text(c, "first_mes", "First message (greeting)", "agent-first-mes", lines=3, max_lines=15)
    c["alternate_greetings"] = greetings_list()
    gr.Markdown("#### Prompt", elem_classes=["anima-section"])
    _text(
        c,
        "mes_example",
        "Example dialogues",
        "agent-mes-example",
        info="Start each example with <START>; write {{user}}: and {{char}}: lines.",
        lines=4,
        max_lines=20,
    )
    _text(
        c,
        "system_prompt",
        "System prompt",
        "agent-system-prompt",
        info="Replaces the default; {{original}} keeps it.",
        lines=2,
        max_lines=10,
    )
    _text(
        c,
        "post_history_instructions",
        "Post-history instructions",
        "agent-post-history",
        info="Sent after the chat history, just before the reply.",
        lines=2,
        max_lines=10,
    )
    gr.Markdown("#### Card details", elem_classes=["anima-section"])
    _text(c, "creator_notes", "Creator notes", "agent-creator-notes", lines=2, max_lines=10)
    _text(c, "tags", "Tags", "agent-tags", info="Comma separated.")
    with gr.Row():
        _text(c, "creator", "Creator", "agent-creator", min_width=160)
        _text(c, "character_version", "Character version", "agent-version", min_width=160)


def generation_fields(c: Components) -> None:
    """Sampling settings, with the bounds and defaults of ``GenerationSettings``."""
    model = GenerationSettings
    with gr.Row():
        c["max_new_tokens"] = widgets.number(
            model,
            "max_new_tokens",
            integer=True,
            label="Max new tokens",
            elem_id="agent-max-new-tokens",
            min_width=160,
        )
        c["temperature"] = widgets.slider(
            model,
            "temperature",
            step=0.05,
            label="Temperature",
            elem_id="agent-temperature",
            min_width=200,
        )
        c["top_p"] = widgets.slider(
            model, "top_p", step=0.01, label="Top p", elem_id="agent-top-p", min_width=200
        )
    with gr.Row():
        c["top_k"] = widgets.number(
            model,
            "top_k",
            integer=True,
            label="Top k (0: off)",
            elem_id="agent-top-k",
            min_width=160,
        )
        c["repetition_penalty"] = widgets.slider(
            model,
            "repetition_penalty",
            step=0.05,
            label="Repetition penalty",
            elem_id="agent-repetition-penalty",
            min_width=200,
        )
