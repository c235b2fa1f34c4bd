"""The chat screen's chat files: download the open chat, import a SillyTavern chat.

Components and wiring only; ``transfer_handlers.py`` does the work.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.chat import transfer_handlers as handlers
from ui.context import StudioContext
from ui.wiring import wire


def build_transfer(ctx: StudioContext, c: dict[str, Any]) -> None:
    with gr.Row(equal_height=True):
        c["export_jsonl"] = gr.Button(
            "Export SillyTavern .jsonl", elem_id="chat-export-jsonl", min_width=160
        )
        c["export_json"] = gr.Button(
            "Export JSON (all versions)", elem_id="chat-export-json", min_width=160
        )
        c["import"] = gr.UploadButton(
            "Import .jsonl onto the agent",
            file_types=[".jsonl", ".json", ".txt"],
            file_count="single",
            elem_id="chat-import",
            min_width=160,
        )
    c["export_file"] = gr.File(
        label="Download", interactive=False, visible=False, elem_id="chat-export-file"
    )


def wire_transfer(ctx: StudioContext, c: dict[str, Any]) -> None:
    services = ctx.services
    for fmt in ("jsonl", "json"):
        wire(
            c[f"export_{fmt}"].click,
            handlers.export_chat,
            services,
            inputs=[c["conversation"], gr.State(fmt)],
            outputs={"export_file": c["export_file"], "status": c["status"]},
            as_user=True,
        )
    wire(
        c["import"].upload,
        handlers.import_chat,
        services,
        inputs=[c["agent"], c["members"], c["import"]],
        outputs={name: c[name] for name in ("conversation", "chatbot", "status")},
        as_user=True,
    )
