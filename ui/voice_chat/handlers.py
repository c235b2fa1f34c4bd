"""Talking in the chat screen (handlers): a microphone that streams to the server, and
spoken replies.

While the microphone is on, chunks of about a quarter second go to ``services.voice``'s
``Listener``: WebRTC VAD notices when the user stops, and the words are transcribed during
the first short pause. The turn then goes to the agent, whose reply appears as text and plays
as audio sentence by sentence (Gradio streams the audio). The microphone can stay on for a
hands-free conversation: each pause long enough ends a turn. Stopping the recording ends the
turn too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr
import numpy as np

from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from ui.chat.handlers import conversation_choices
from ui.common import show_error
from ui.wiring import Updates
from voice.audio import Audio, encode_wav
from voice.loop import Listener


def _chunk_audio(chunk: Any) -> Audio | None:
    """Gradio's ``(rate, int16 array)`` microphone chunk as mono float audio."""
    if chunk is None:
        return None
    rate, data = chunk
    samples = np.asarray(data)
    if samples.dtype.kind in "iu":
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return Audio(samples.astype(np.float32), int(rate))


def _heard(text: str) -> Updates:
    """The end of a turn: a fresh listener next time, and the transcript for ``respond``."""
    if not text.strip():
        return {"listener": None, "caption": "🎙️ nothing heard; try again"}
    return {"listener": None, "caption": f"You said: {text}", "turn": f"{uuid.uuid4().hex}\n{text}"}


def listen(services: Services, chunk: Any, state: Listener | None) -> Updates:
    """Feed one microphone chunk; a pause long enough ends the turn."""
    audio = _chunk_audio(chunk)
    if audio is None:
        return {"listener": state}
    try:
        state = state or services.voice.listener()
        if not state.feed(audio):
            if not state.heard_speech:  # keep the last turn's caption until one starts
                return {"listener": state}
            partial = f"🎙️ {state.partial}…" if state.partial else "🎙️ listening…"
            return {"listener": state, "caption": partial}
        text = state.finish().text
    except AnimaError as exc:
        return {"listener": None, "caption": show_error(exc)}
    return _heard(text)


def stop(services: Services, state: Listener | None) -> Updates:
    """Stopping the recording ends the turn too."""
    if state is None or not state.heard_speech:
        return {"listener": None, "caption": ""}
    return _heard(state.finish().text)


def respond(
    services: Services,
    agent_id: str | None,
    conv_id: str | None,
    user_name: str,
    value: str,
    *,
    principal: Principal,
) -> Iterator[Updates]:
    """Send the turn; stream the reply as text and as audio, sentence by sentence."""
    text = value.partition("\n")[2].strip() if value else ""
    if not text:
        return
    try:
        if not conv_id:
            if not agent_id:
                raise ValidationError("pick an agent first, then talk")
            conv_id = services.chat.create_conversation(agent_id, user_name, principal=principal).id
        conv = services.chat.get_conversation(conv_id, principal=principal)
    except AnimaError as exc:
        yield {"player": None, "status": show_error(exc)}
        return
    base = [{"role": m.role, "content": m.content} for m in conv.messages]
    shown = [*base, {"role": "user", "content": text}]
    listing = _conversations(services, conv.agent_id, conv_id, principal=principal)
    yield {"conversation": listing, "chatbot": shown, "player": None, "status": ""}
    reply = ""
    try:
        for event in services.voice.reply(conv_id, text, principal=principal):
            if event.kind == "text":
                reply += event.text
                yield {"chatbot": [*shown, {"role": "assistant", "content": reply}], "player": None}
            elif event.kind == "audio" and event.audio is not None:
                yield {"player": encode_wav(event.audio)}
    except AnimaError as exc:
        yield {"player": None, "status": show_error(exc)}
        return
    yield {
        "conversation": _conversations(services, conv.agent_id, conv_id, principal=principal),
        "player": None,
    }


def _conversations(services: Services, agent_id: str, conv_id: str, *, principal: Principal) -> Any:
    choices = conversation_choices(services, agent_id, principal=principal)
    return gr.update(choices=choices, value=conv_id)
