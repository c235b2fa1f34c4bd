"""The agent editor's Voice panel: record or upload a sample, see its quality at once, make it
the agent's voice and hear the result, with the similarity figure the service measured.

Layout and handlers only; the checks, storage and synthesis are ``services.voice``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from container import Services
from core.errors import AnimaError, NotFoundError, ValidationError
from ui.common import principal_of, show_error
from voice.audio import encode_wav
from voice.service import VoiceProfileView

CONSENT_STATEMENT = (
    "I am the speaker in this recording, or the speaker agreed to its use as this agent's voice."
)
TRY_TEXT = "Hello! This is how I sound. Shall we begin our adventure?"


def profile_text(profile: VoiceProfileView | None) -> str:
    if profile is None:
        return "No voice yet: the agent speaks with the default voice."
    before = profile.similarity_before
    after = profile.similarity_after
    figures = ""
    if after is not None:
        figures = f"**similarity {after:.2f}**"
        if before is not None:
            figures = f"similarity to the sample **{before:.2f} → {after:.2f}**"
    return (
        f"**Voice set** from {profile.duration_s:.0f} s of speech "
        f"(sha256 `{profile.sample_sha256[:12]}…`). {figures}\n\n{profile.note}"
    )


def quality_text(path: str | None, services: Services) -> str:
    if not path:
        return ""
    try:
        report = services.voice.check_sample(Path(path).read_bytes())
    except AnimaError as exc:
        return f"⚠️ {exc.message}"
    if report.problems:
        return "⚠️ " + "; ".join(report.problems)
    return f"✅ {report.summary()}"


def build_voice_panel(services: Services, picker: gr.Dropdown) -> None:
    """Lay out the panel (call inside the agent editor) and wire it to the agent ``picker``."""
    with gr.Accordion("Voice", open=False, elem_id="agent-voice"):
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

    def current_sample(agent_id: str) -> Any:
        try:
            return (22050, _samples(services.voice.sample_wav(agent_id)))
        except NotFoundError:
            return None

    def load(agent_id: str | None) -> list[Any]:
        if not agent_id:
            return [profile_text(None), None, ""]
        try:
            profile = services.voice.get_profile(agent_id)
        except NotFoundError:
            return [profile_text(None), None, ""]
        except AnimaError as exc:
            return [show_error(exc), None, ""]
        return [profile_text(profile), current_sample(agent_id), ""]

    def use(
        agent_id: str | None,
        path: str | None,
        agreed: bool,
        request: gr.Request,
        progress=gr.Progress(),
    ) -> list[Any]:
        try:
            if not agent_id:
                raise ValidationError("save the agent first, then give it a voice")
            if not path:
                raise ValidationError("record or upload a sample first")
            if not agreed:
                raise ValidationError("confirm the consent statement first")
            progress(0.1, desc="checking the sample and matching the voice (10-60 s)")
            profile = services.voice.set_profile(
                agent_id,
                Path(path).read_bytes(),
                CONSENT_STATEMENT,
                Path(path).name,
                principal=principal_of(services, request),
            )
        except AnimaError as exc:
            return [gr.skip(), gr.skip(), show_error(exc)]
        return [profile_text(profile), current_sample(agent_id), "✅ voice saved"]

    def drop(agent_id: str | None, request: gr.Request) -> list[Any]:
        try:
            if not agent_id:
                raise ValidationError("pick an agent first")
            services.voice.delete_profile(agent_id, principal=principal_of(services, request))
        except AnimaError as exc:
            return [gr.skip(), gr.skip(), show_error(exc)]
        return [profile_text(None), None, "Voice removed."]

    def speak(agent_id: str | None, text: str) -> Any:
        try:
            audio = services.voice.speak(agent_id or None, text)
        except AnimaError as exc:
            show_error(exc)
            return None
        return encode_wav(audio)

    sample.change(lambda p: quality_text(p, services), inputs=[sample], outputs=[quality])
    picker.change(load, inputs=[picker], outputs=[status, current, quality])
    save.click(use, inputs=[picker, sample, consent], outputs=[status, current, quality])
    remove.click(drop, inputs=[picker], outputs=[status, current, quality])
    try_btn.click(speak, inputs=[picker, try_text], outputs=[heard])


def _samples(wav: bytes) -> Any:
    from voice.audio import decode_mono

    return decode_mono(wav).samples
