"""The import screen: upload a character card (PNG, JSON or CHARX) to create an agent.

Each import announces that the agents changed, so every agent picker lists the new one.
"""

from __future__ import annotations

import gradio as gr

from ui.context import StudioContext
from ui.importer import handlers
from ui.wiring import wire

CARD_FILE_TYPES = [".png", ".json", ".charx"]


def build_import_screen(ctx: StudioContext) -> None:
    """Lay out the screen inside the caller's ``gr.Tab`` and wire its events."""
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
    imported = wire(
        upload.upload,
        handlers.import_card,
        ctx.services,
        inputs=[upload],
        outputs={"status": status},
        as_user=True,
    )
    ctx.announce_agents_changed([imported])
