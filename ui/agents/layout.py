"""The agent editor's layout: the picker, then one screen holding the side column (avatar,
Save, export, delete), the tabs (Card, Lorebook, Knowledge, Voice, Fine-tune, On-chain,
Generation) and a dock for panels that work beside the form.

Only components live here; ``events.py`` wires them and ``handlers.py`` holds what each
button does. The components are kept in one dict by name, the same names the handlers return.
On a wide screen the three columns stand side by side; on a phone they stack (``studio.css``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from gradio.events import Dependency

from ui.agents.events import wire_editor
from ui.agents.fields import card_fields, generation_fields
from ui.agents.form import FORM_KEYS
from ui.agents.side import side_column
from ui.context import StudioContext
from ui.models.layout import build_agent_model_panel
from ui.panels.chain.layout import build_chain_panel
from ui.panels.finetune.layout import build_finetune_panel
from ui.panels.inspector.layout import build_inspector_panel
from ui.panels.knowledge.layout import build_knowledge_panel
from ui.panels.lorebook.layout import build_lorebook_panel
from ui.panels.revenue.layout import build_revenue_panel
from ui.panels.voice.layout import build_voice_panel

Components = dict[str, Any]


@dataclass
class EditorForm:
    """What a docked panel may read: the picker and the form's components by form key.

    ``inputs`` are the form's components in ``FORM_KEYS`` order; a handler taking them as
    event inputs gets the draft as typed (``values`` turns them back into a dict), so a
    preview or a test chat can use the card before it is saved.
    """

    picker: gr.Dropdown
    components: Components
    inputs: list[Any] = field(default_factory=list)

    @staticmethod
    def values(*raw: Any) -> dict[str, Any]:
        return dict(zip(FORM_KEYS, raw, strict=True))


# A panel built into the dock column beside the tabs: ``panel(ctx, form)``, called inside
# the dock's ``gr.Column``.
DockPanel = Callable[[StudioContext, EditorForm], Any]


def inspector_dock(ctx: StudioContext, form: EditorForm) -> None:
    """The prompt inspector and the test chat, on the draft as typed."""
    with gr.Column(elem_id="agent-inspector"):
        gr.Markdown("#### Prompt inspector and test chat")
        build_inspector_panel(ctx, form.picker, {k: form.components[k] for k in FORM_KEYS})


DOCK_PANELS: tuple[DockPanel, ...] = (inspector_dock,)


@dataclass
class AgentsScreen:
    picker: gr.Dropdown
    # Events after which agents may have been added, renamed or removed.
    list_changed: list[Dependency]
    form: EditorForm | None = None


def build_agents_screen(
    ctx: StudioContext, dock: Sequence[DockPanel] | None = None
) -> AgentsScreen:
    """Lay out the editor inside the caller's ``gr.Tab`` and wire its events."""
    dock = DOCK_PANELS if dock is None else tuple(dock)
    c: Components = {}
    with gr.Row(equal_height=True, elem_classes=["anima-editor-bar"]):
        c["picker"] = ctx.agent_picker(
            label="Agent",
            info="Pick an agent to edit, or start a new one.",
            elem_id="agent-select",
            scale=4,
            min_width=220,
        )
        c["new"] = gr.Button("New agent", elem_id="agent-new", scale=1, min_width=120)
    # The panels follow the agent picked here.
    c["picker"].change(lambda agent_id: agent_id, [c["picker"]], [ctx.selected_agent])
    with gr.Row(elem_id="agent-editor", elem_classes=["anima-editor"]):
        with gr.Column(scale=1, min_width=240, elem_id="agent-side"):
            side_column(c)
        with gr.Column(scale=3, min_width=320, elem_id="agent-main"):
            _tabs(ctx, c)
        form = EditorForm(c["picker"], c, [c[k] for k in FORM_KEYS])
        with gr.Column(scale=2, min_width=300, elem_id="agent-dock", visible=bool(dock)):
            for panel in dock:
                panel(ctx, form)
    saved, deleted = wire_editor(ctx, c)
    return AgentsScreen(picker=c["picker"], list_changed=[saved, deleted], form=form)


def _tab(title: str, key: str) -> gr.Tab:
    # The tab's button is ``#agent-tab-<key>-button`` (Gradio adds "-button").
    return gr.Tab(title, id=f"agent-{key}", elem_id=f"agent-tab-{key}")


def _tabs(ctx: StudioContext, c: Components) -> None:
    """The editor's tabs. Each panel keeps its own container id (``#agent-knowledge``...)."""
    track = ["anima-track"]  # edits in here count for the unsaved-change warning
    with gr.Tabs(elem_id="agent-tabs", overflow_behavior="wrap", elem_classes=["anima-tabs"]):
        with _tab("Card", "card"), gr.Column(elem_classes=track):
            card_fields(c)
        with _tab("Lorebook", "lorebook"), gr.Column(elem_id="agent-lorebook"):
            build_lorebook_panel(ctx, c["picker"])
        with _tab("Knowledge", "knowledge"), gr.Column(elem_id="agent-knowledge"):
            build_knowledge_panel(ctx)
        with _tab("Voice", "voice"):
            build_voice_panel(ctx)
        with _tab("Fine-tune", "finetune"), gr.Column(elem_id="agent-finetune"):
            build_finetune_panel(ctx)
        with _tab("On-chain", "chain"):
            c["chain"] = build_chain_panel(ctx, c["picker"])
            build_revenue_panel(ctx, c["picker"])  # an Accordion "Revenue"
        with _tab("Generation", "generation"), gr.Column(elem_classes=track):
            gr.Markdown("How this agent samples its replies; the defaults suit most cards.")
            generation_fields(c)
            build_agent_model_panel(ctx, c["picker"])  # the agent's model, from the connections
