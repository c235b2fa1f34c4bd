"""The editor's side column: avatar, visibility, Save with its status line, export, Delete.

It sits beside the tabs on a wide screen (and above them on a phone), so Save and what the
last action said stay in view whichever tab is open.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.agents.form import VISIBILITY_CHOICES

Components = dict[str, Any]
EXPORT_FORMATS = ("png", "json", "charx")


def side_column(c: Components) -> None:
    """Lay out the column's controls into ``c`` (call inside a ``gr.Column``)."""
    c["avatar"] = gr.Image(
        label="Avatar",
        type="filepath",
        format="png",
        sources=["upload"],
        height=220,
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
    c["status"] = gr.Markdown(
        "Pick an agent above to edit it, or fill in the Card tab and Save to create one.",
        elem_id="agent-status",
        elem_classes=["anima-status"],
    )
    with gr.Accordion("Export card", open=False, elem_id="agent-export"):
        c["spec"] = gr.Radio(
            ["v3", "v2"], value="v3", label="Card spec (JSON)", elem_id="agent-export-spec"
        )
        with gr.Row():
            for fmt in EXPORT_FORMATS:
                c[f"export_{fmt}"] = gr.Button(
                    fmt.upper(), size="sm", elem_id=f"agent-export-{fmt}", min_width=60
                )
        c["export_file"] = gr.File(label="Download", interactive=False, elem_id="agent-export-file")
    c["delete"] = gr.Button("Delete agent", variant="stop", size="sm", elem_id="agent-delete")
    with gr.Row(visible=False) as c["confirm_row"]:
        c["confirm"] = gr.Button(
            "Yes, delete it", variant="stop", size="sm", elem_id="agent-delete-confirm"
        )
        c["cancel"] = gr.Button("Cancel", size="sm", elem_id="agent-delete-cancel")
