"""The prompt inspector and test chat panel, beside the agent editor.

Left: a sample message (and optionally one of the caller's chats with the agent) and
"Preview prompt", which shows the exact prompt part by part with token bars against the
context window, the lorebook entries that fired with their keys, and what was left out.
Right: a small test chat with the card as the form has it now, saved or not; it creates no
conversation. Both read the editor's form components (``draft_components``, by
``ui.agents.form.FORM_KEYS``), so they see unsaved edits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.agents.form import FORM_KEYS
from ui.context import StudioContext
from ui.panels.inspector import handlers
from ui.wiring import wire

# Styles for the parts list: a bar per part, wrapping text, readable at phone width.
STYLE = """
<style>
.insp-parts { display: flex; flex-direction: column; gap: 4px; }
.insp-parts .insp-row { display: grid !important; align-items: center; gap: 4px 10px;
  grid-template-columns: 1em minmax(0, 1fr) 6.5em minmax(80px, 200px); }
.insp-total { font-weight: 600; padding: 0 9px; }
.insp-part { border: 1px solid var(--border-color-primary); border-radius: 6px;
  padding: 4px 8px; }
.insp-part summary { cursor: pointer; list-style: none; margin: 0; }
.insp-part summary::-webkit-details-marker { display: none; }
.insp-arrow::before { content: "\\25B6"; font-size: 0.7em;
  color: var(--body-text-color-subdued); }
.insp-part[open] .insp-arrow::before { content: "\\25BC"; }
.insp-label { font-weight: 600; overflow-wrap: anywhere; }
.insp-tokens { color: var(--body-text-color-subdued); font-size: 0.9em; white-space: nowrap;
  text-align: right; }
.insp-key { background: var(--color-accent-soft); border-radius: 4px; padding: 0 6px;
  font-size: 0.8em; font-weight: 400; overflow-wrap: anywhere; margin-left: 4px;
  display: inline-block; max-width: 100%; }
.insp-bar { display: block; height: 8px; border-radius: 4px; background: var(--neutral-200);
  overflow: hidden; }
.insp-bar > span { display: block; height: 100%; min-width: 2px;
  background: var(--color-accent); }
.insp-part pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0 2px;
  font-size: 0.85em; max-height: 320px; overflow-y: auto; }
@media (max-width: 600px) {
  .insp-parts .insp-row { grid-template-columns: 1em minmax(0, 1fr) auto; }
  .insp-parts .insp-row .insp-bar { grid-column: 2 / 4; }
}
</style>
"""


@dataclass
class InspectorPanel:
    """The parts other code (and tests) may wire to."""

    preview: gr.Button
    send: gr.Button


def build_inspector_panel(
    ctx: StudioContext, picker: gr.Dropdown, draft_components: dict[str, gr.Component]
) -> InspectorPanel:
    """Lay out the panel inside the caller's layout; it follows ``picker``."""
    c: dict[str, Any] = {}
    gr.HTML(STYLE, padding=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=300):
            _inspector(c)
        with gr.Column(scale=2, min_width=300):
            _test_chat(c)
    _wire(ctx, picker, draft_components, c)
    return InspectorPanel(preview=c["preview"], send=c["test_send"])


def _inspector(c: dict[str, Any]) -> None:
    gr.Markdown(
        "**Prompt inspector**: what the model will read for a message, part by part. It uses "
        "the form as it is now, unsaved edits included."
    )
    c["message"] = gr.Textbox(
        label="Sample message",
        placeholder="e.g. tell me about the lighthouse",
        lines=2,
        elem_id="insp-message",
    )
    with gr.Row():
        c["conversation"] = gr.Dropdown(
            [handlers.NO_CONVERSATION],
            value="",
            label="In one of your chats (optional)",
            elem_id="insp-conversation",
            scale=3,
            min_width=180,
        )
        c["preview"] = gr.Button(
            "Preview prompt", variant="primary", elem_id="insp-preview", scale=1, min_width=140
        )
    c["status"] = gr.Markdown("", elem_id="insp-status")
    c["summary"] = gr.Markdown("", elem_id="insp-summary")
    c["parts"] = gr.HTML("", elem_id="insp-parts")
    c["lore"] = gr.Markdown("", elem_id="insp-lore")
    with gr.Accordion("Rendered prompt (the chat template applied)", open=False):
        c["rendered"] = gr.Code(
            "", language=None, interactive=False, elem_id="insp-rendered", wrap_lines=True
        )


def _test_chat(c: dict[str, Any]) -> None:
    gr.Markdown(
        "**Test chat**: talk to the card as the form has it now. Nothing is saved and no "
        "chat is added to your list."
    )
    c["test_chat"] = gr.Chatbot(
        label="Test chat",
        elem_id="insp-test-chat",
        height=360,
        placeholder="Write a message below to try the card.",
        feedback_options=None,
    )
    c["test_text"] = gr.Textbox(
        label="Message", placeholder="Say something…", lines=1, elem_id="insp-test-text"
    )
    with gr.Row():
        c["test_send"] = gr.Button("Send", variant="primary", elem_id="insp-test-send")
        c["test_clear"] = gr.Button("Clear", elem_id="insp-test-clear")
    c["test_status"] = gr.Markdown("", elem_id="insp-test-status")


def _wire(
    ctx: StudioContext,
    picker: gr.Dropdown,
    draft_components: dict[str, gr.Component],
    c: dict[str, Any],
) -> None:
    services = ctx.services
    form = [draft_components[k] for k in FORM_KEYS]
    # Chats started since the agent was picked appear when the list is opened.
    wire(
        [picker.change, c["conversation"].focus],
        handlers.conversations,
        services,
        inputs=[picker, c["conversation"]],
        outputs={"conversation": c["conversation"]},
    )
    shown = {k: c[k] for k in ("status", "summary", "parts", "lore", "rendered")}
    wire(
        [c["preview"].click, c["message"].submit],
        handlers.preview,
        services,
        inputs=[picker, c["message"], c["conversation"], *form],
        outputs=shown,
    )
    test = {k: c[k] for k in ("test_chat", "test_text", "test_status")}
    wire(
        [c["test_send"].click, c["test_text"].submit],
        handlers.send_test,
        services,
        inputs=[picker, c["test_chat"], c["test_text"], *form],
        outputs=test,
    )
    # A test chat belongs to the card it was started with: another agent starts afresh.
    wire([c["test_clear"].click, picker.change], handlers.clear_test, services, outputs=test)
