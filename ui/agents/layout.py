"""The agent editor's layout: the picker, the card form, export and delete, and the panels.

Only components and wiring live here; what each button does is in ``handlers.py``. The
components are kept in one dict by name, the same names the handlers return, so mapping a
handler's result onto ``outputs=`` is one ``wire`` call per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.events import Dependency

from agents.schema import GenerationSettings
from container import Services
from core.principal import Principal
from ui import widgets
from ui.agents import handlers
from ui.agents.form import FORM_KEYS, GREETING_SEPARATOR, VISIBILITY_CHOICES
from ui.context import StudioContext
from ui.models.layout import build_agent_model_panel
from ui.panels.chain.layout import build_chain_panel
from ui.panels.finetune.layout import build_finetune_panel
from ui.panels.inspector.layout import build_inspector_panel
from ui.panels.knowledge.layout import build_knowledge_panel
from ui.panels.revenue.layout import build_revenue_panel
from ui.panels.voice.layout import build_voice_panel
from ui.wiring import Updates, wire

Components = dict[str, Any]
EXPORT_FORMATS = ("png", "json", "charx")


@dataclass
class AgentsScreen:
    picker: gr.Dropdown
    # Events after which agents may have been added, renamed or removed.
    list_changed: list[Dependency]


def build_agents_screen(ctx: StudioContext) -> AgentsScreen:
    """Lay out the editor inside the caller's ``gr.Tab`` and wire its events."""
    c: Components = {}
    with gr.Row():
        c["picker"] = ctx.agent_picker(
            label="Agent",
            info="Pick an agent to edit, or start a new one.",
            elem_id="agent-select",
            scale=4,
        )
        c["new"] = gr.Button("New agent", elem_id="agent-new", scale=1)
    # The panels follow the agent picked here.
    c["picker"].change(lambda agent_id: agent_id, [c["picker"]], [ctx.selected_agent])
    with gr.Row():
        with gr.Column(scale=1, min_width=240):
            _side_column(ctx, c)
        with gr.Column(scale=3):
            _card_fields(c)
            _generation_fields(c)
            build_agent_model_panel(ctx, c["picker"])  # the agent's model, from the connections
    with gr.Accordion("Knowledge", open=False, elem_id="agent-knowledge"):
        build_knowledge_panel(ctx)
    build_voice_panel(ctx)
    with gr.Accordion("Fine-tune (LoRA adapter)", open=False, elem_id="agent-finetune"):
        build_finetune_panel(ctx)
    with gr.Accordion("Prompt inspector and test chat", open=False, elem_id="agent-inspector"):
        build_inspector_panel(ctx, c["picker"], {k: c[k] for k in FORM_KEYS})
    build_revenue_panel(ctx, c["picker"])  # an Accordion "Revenue"
    return _wire(ctx, c)


def _side_column(ctx: StudioContext, c: Components) -> None:
    """Avatar, Save, the status line, export, the on-chain section and Delete."""
    c["avatar"] = gr.Image(
        label="Avatar",
        type="filepath",
        format="png",
        sources=["upload"],
        height=260,
        elem_id="agent-avatar",
    )
    c["avatar_changed"] = gr.State(False)
    c["visibility"] = gr.Dropdown(
        VISIBILITY_CHOICES,
        value="public",
        label="Visibility",
        info="Who sees this agent in lists, /v1/models and chat. Private needs a signed-in owner.",
        elem_id="agent-visibility",
    )
    c["save"] = gr.Button("Save", variant="primary", elem_id="agent-save")
    c["status"] = gr.Markdown("", elem_id="agent-status")
    with gr.Accordion("Export card", open=False):
        c["spec"] = gr.Radio(
            ["v3", "v2"], value="v3", label="Card spec (JSON)", elem_id="agent-export-spec"
        )
        with gr.Row():
            for fmt in EXPORT_FORMATS:
                c[f"export_{fmt}"] = gr.Button(
                    fmt.upper(), size="sm", elem_id=f"agent-export-{fmt}"
                )
        c["export_file"] = gr.File(label="Download", interactive=False, elem_id="agent-export-file")
    c["chain"] = build_chain_panel(ctx, c["picker"])
    c["delete"] = gr.Button("Delete agent", variant="stop", elem_id="agent-delete")
    with gr.Row(visible=False) as c["confirm_row"]:
        c["confirm"] = gr.Button(
            "Yes, delete it", variant="stop", size="sm", elem_id="agent-delete-confirm"
        )
        c["cancel"] = gr.Button("Cancel", size="sm", elem_id="agent-delete-cancel")


def _text(c: Components, key: str, label: str, elem_id: str, **options: Any) -> None:
    c[key] = gr.Textbox(label=label, elem_id=elem_id, **options)


def _card_fields(c: Components) -> None:
    """The character card's text fields, in the order a card editor shows them."""
    with gr.Row():
        _text(c, "name", "Name", "agent-name", scale=2)
        _text(c, "nickname", "Nickname", "agent-nickname", info="Used for {{char}} if set.")
    _text(c, "description", "Description", "agent-description", lines=4, max_lines=20)
    _text(c, "personality", "Personality", "agent-personality", lines=2, max_lines=10)
    _text(c, "scenario", "Scenario", "agent-scenario", lines=2, max_lines=10)
    _text(c, "first_mes", "First message (greeting)", "agent-first-mes", lines=3, max_lines=15)
    _text(
        c,
        "alternate_greetings",
        "Alternate greetings",
        "agent-alt-greetings",
        info=f"Separate greetings with a line holding only {GREETING_SEPARATOR}",
        lines=3,
        max_lines=15,
    )
    with gr.Accordion("Prompt", open=False):
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
            lines=2,
            max_lines=10,
        )
    with gr.Accordion("Card details", open=False):
        _text(c, "creator_notes", "Creator notes", "agent-creator-notes", lines=2, max_lines=10)
        _text(c, "tags", "Tags", "agent-tags", info="Comma separated.")
        with gr.Row():
            _text(c, "creator", "Creator", "agent-creator")
            _text(c, "character_version", "Character version", "agent-version")


def _generation_fields(c: Components) -> None:
    """Sampling settings, with the bounds and defaults of ``GenerationSettings``."""
    model = GenerationSettings
    with gr.Accordion("Generation", open=True):
        with gr.Row():
            c["max_new_tokens"] = widgets.number(
                model,
                "max_new_tokens",
                integer=True,
                label="Max new tokens",
                elem_id="agent-max-new-tokens",
            )
            c["temperature"] = widgets.slider(
                model, "temperature", step=0.05, label="Temperature", elem_id="agent-temperature"
            )
            c["top_p"] = widgets.slider(
                model, "top_p", step=0.01, label="Top p", elem_id="agent-top-p"
            )
        with gr.Row():
            c["top_k"] = widgets.number(
                model, "top_k", integer=True, label="Top k (0: off)", elem_id="agent-top-k"
            )
            c["repetition_penalty"] = widgets.slider(
                model,
                "repetition_penalty",
                step=0.05,
                label="Repetition penalty",
                elem_id="agent-repetition-penalty",
            )


def _save(
    services: Services,
    agent_id: str | None,
    path: str | None,
    changed: bool,
    *raw: Any,
    principal: Principal,
) -> Updates:
    """``handlers.save`` with the form's positional values turned into a dict by key."""
    values = dict(zip(FORM_KEYS, raw, strict=True))
    return handlers.save(services, agent_id, path, changed, values, principal=principal)


def _wire(ctx: StudioContext, c: Components) -> AgentsScreen:
    services = ctx.services
    form = [c[k] for k in FORM_KEYS]
    detail = {name: c[name] for name in handlers.DETAIL}
    picked = {"picker": c["picker"], **detail}
    wire(
        c["picker"].input,
        handlers.load,
        services,
        inputs=[c["picker"]],
        outputs={**detail, "confirm_row": c["confirm_row"]},
    )
    wire(c["new"].click, handlers.new, services, outputs=picked)
    c["avatar"].upload(lambda: True, outputs=[c["avatar_changed"]])
    saved = wire(
        c["save"].click,
        _save,
        services,
        inputs=[c["picker"], c["avatar"], c["avatar_changed"], *form],
        outputs=picked,
        as_user=True,
    )
    status_row = {"confirm_row": c["confirm_row"], "status": c["status"]}
    wire(c["delete"].click, handlers.ask_delete, services, inputs=[c["picker"]], outputs=status_row)
    wire(c["cancel"].click, handlers.cancel_delete, services, outputs=status_row)
    deleted = wire(
        c["confirm"].click,
        handlers.delete,
        services,
        inputs=[c["picker"]],
        outputs={**picked, "confirm_row": c["confirm_row"]},
        as_user=True,
    )
    for fmt in EXPORT_FORMATS:
        wire(
            c[f"export_{fmt}"].click,
            lambda services, agent_id, spec, fmt=fmt: handlers.export(
                services, fmt, agent_id, spec
            ),
            services,
            inputs=[c["picker"], c["spec"]],
            outputs={"export_file": c["export_file"], "status": c["status"]},
        )
    # Saving changes the card, hence its hash: the on-chain section says whether it matches.
    c["chain"].follow(saved, c["picker"])
    ctx.announce_agents_changed([saved, deleted])
    return AgentsScreen(picker=c["picker"], list_changed=[saved, deleted])
