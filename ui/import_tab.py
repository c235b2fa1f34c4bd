"""The Import tab: turn a character card file (PNG, JSON or CHARX) into a new agent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.events import Dependency

from container import Services
from core.errors import AnimaError
from ui.common import agent_label, principal_of, show_error

CARD_FILE_TYPES = [".png", ".json", ".charx"]


@dataclass
class ImportTab:
    """What the studio needs to keep other tabs in step with this one."""

    # Events after which a new agent may exist.
    list_changed: list[Dependency]


def build_import_tab(services: Services) -> ImportTab:
    """Lay out the tab inside the caller's ``gr.Tab`` and wire its events."""
    gr.Markdown(
        "Upload a character card: a PNG with the card embedded (SillyTavern, Chub), "
        "a card JSON (V2 or V3) or a CHARX archive. Each upload creates a new agent."
    )
    upload = gr.File(
        label="Character card",
        file_types=CARD_FILE_TYPES,
        type="filepath",
        elem_id="import-file",
    )
    status = gr.Markdown("", elem_id="import-status")

    def import_card(path: str | None, request: gr.Request) -> str:
        if not path:
            return ""
        file = Path(path)
        principal = principal_of(services, request)
        try:
            agent = services.agents.import_card(
                file.name, file.read_bytes(), principal=principal, owner=principal.address
            )
        except AnimaError as exc:
            return show_error(exc)
        return f"Imported **{agent.name}** ({agent_label(agent)}). Open it in the Agents tab."

    imported = upload.upload(import_card, inputs=[upload], outputs=[status])
    return ImportTab(list_changed=[imported])
