"""The voice panel's layout: record or upload a sample, see its quality at once, make it the
agent's voice and hear the result, with the similarity figure the service measured.

Components and wiring only; ``handlers.py`` does the work. The panel follows the agent
selected in the editor.
"""

from __future__ import annotations

import gradio as gr

from ui.context import StudioContext
from ui.panels.voice import handlers
from ui.panels.voice.handlers import CONSENT_STATEMENT, TRY_TEXT, profile_text
from ui.wiring import wire


def build_voice_panel(ctx: StudioContext) -> None:
    """Lay out the panel (call inside the agent editor's Voice tab) and wire its events."""
    with gr.Column(elem_id="agent-voice"):
        status = gr.Markdown(profile_text(None), elem_id="agent-voice-status")
        with gr.Row():
            sample = gr.Audio(
                sources=["upload", "microphone"],
                type="filepath",
                label="New voice sample: 10 s to 3 min of one person speaking",
                elem_id="agent-voice-sample",
            )
            current = gr.Audio(
                label="Current sample (cleaned)",
                type="filepath",
                interactive=False,
                elem_id="agent-voice-current",
            )
        quality = gr.Markdown("", elem_id="agent-voice-quality")
        consent = gr.Checkbox(label=CONSENT_STATEMENT, value=False, elem_id="agent-voice-consent")
        with gr.Row():
            save = gr.Button("Use this voice", variant="primary", elem_id="agent-voice-save")
            remove = gr.Button("Remove voice", variant="stop", elem_id="agent-voice-remove")
        with gr.Row(equal_height=True):
            try_text = gr.Textbox(
                value=TRY_TEXT, label="Try it", scale=4, elem_id="agent-voice-try-text"
            )
            try_btn = gr.Button("Speak", scale=1, elem_id="agent-voice-try")
        heard = gr.Audio(
            label="Agent speaking",
            interactive=False,
            autoplay=True,
            elem_id="agent-voice-try-audio",
        )

    services, agent = ctx.services, ctx.selected_agent
    shown = {"status": status, "current": current, "quality": quality}
    wire(sample.change, handlers.check, services, inputs=[sample], outputs={"quality": quality})
    wire(agent.change, handlers.load, services, inputs=[agent], outputs=shown)
    wire(
        save.click,
        handlers.use,
        services,
        inputs=[agent, sample, consent],
        outputs=shown,
        as_user=True,
        progress=True,
    )
    wire(remove.click, handlers.drop, services, inputs=[agent], outputs=shown, as_user=True)
    wire(
        try_btn.click, handlers.speak, services, inputs=[agent, try_text], outputs={"heard": heard}
    )
