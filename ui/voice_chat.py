"""Talking in the Chat tab: a microphone that streams to the server, and spoken replies.

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
from ui.common import principal_of, show_error
from voice.audio import Audio, encode_wav
from voice.loop import Listener

STREAM_EVERY_S = 0.25


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


def build_voice_chat(
    services: Services,
    agent: gr.Dropdown,
    conversation: gr.Dropdown,
    user: gr.Textbox,
    chatbot: gr.Chatbot,
    status: gr.Markdown,
) -> None:
    """Add the microphone and the voice reply player under the chat (call in the Chat tab)."""
    with gr.Row(equal_height=True):
        mic = gr.Audio(
            sources=["microphone"],
            type="numpy",
            streaming=True,
            label="Talk (VAD ends your turn when you pause)",
            elem_id="chat-mic",
            scale=2,
        )
        player = gr.Audio(
            label="Voice reply",
            streaming=True,
            autoplay=True,
            interactive=False,
            elem_id="chat-voice-reply",
            scale=2,
        )
    caption = gr.Markdown("", elem_id="chat-voice-caption")
    listener = gr.State(None)
    # A finished turn: "<nonce>\n<transcript>"; a change starts the reply.
    turn = gr.Textbox(visible=False, elem_id="chat-voice-turn")

    def listen(chunk: Any, state: Listener | None) -> list[Any]:
        audio = _chunk_audio(chunk)
        if audio is None:
            return [state, gr.skip(), gr.skip()]
        try:
            state = state or services.voice.listener()
            if not state.feed(audio):
                if not state.heard_speech:  # keep the last turn's caption until one starts
                    return [state, gr.skip(), gr.skip()]
                partial = f"🎙️ {state.partial}…" if state.partial else "🎙️ listening…"
                return [state, partial, gr.skip()]
            text = state.finish().text
        except AnimaError as exc:
            return [None, show_error(exc), gr.skip()]
        if not text.strip():
            return [None, "🎙️ nothing heard; try again", gr.skip()]
        return [None, f"You said: {text}", f"{uuid.uuid4().hex}\n{text}"]

    def stop(state: Listener | None) -> list[Any]:
        if state is None or not state.heard_speech:
            return [None, "", gr.skip()]
        text = state.finish().text
        if not text.strip():
            return [None, "🎙️ nothing heard; try again", gr.skip()]
        return [None, f"You said: {text}", f"{uuid.uuid4().hex}\n{text}"]

    def respond(
        agent_id: str | None,
        conv_id: str | None,
        user_name: str,
        value: str,
        request: gr.Request,
    ) -> Iterator[list[Any]]:
        text = value.partition("\n")[2].strip() if value else ""
        if not text:
            return
        try:
            if not conv_id:
                if not agent_id:
                    raise ValidationError("pick an agent first, then talk")
                conv_id = services.chat.create_conversation(agent_id, user_name).id
            conv = services.chat.get_conversation(conv_id)
        except AnimaError as exc:
            yield [gr.skip(), gr.skip(), None, show_error(exc)]
            return
        base = [{"role": m.role, "content": m.content} for m in conv.messages]
        shown = [*base, {"role": "user", "content": text}]
        yield [_conversations(conv.agent_id, conv_id), shown, None, ""]
        reply = ""
        try:
            principal = principal_of(services, request)
            for event in services.voice.reply(conv_id, text, principal=principal):
                if event.kind == "text":
                    reply += event.text
                    yield [
                        gr.skip(),
                        [*shown, {"role": "assistant", "content": reply}],
                        None,
                        gr.skip(),
                    ]
                elif event.kind == "audio" and event.audio is not None:
                    yield [gr.skip(), gr.skip(), encode_wav(event.audio), gr.skip()]
        except AnimaError as exc:
            yield [gr.skip(), gr.skip(), None, show_error(exc)]
            return
        yield [_conversations(conv.agent_id, conv_id), gr.skip(), None, gr.skip()]

    def _conversations(agent_id: str, conv_id: str) -> Any:
        from ui.chat_tab import conversation_label  # (chat_tab imports this module)

        chats = services.chat.list_conversations(agent_id)
        return gr.update(choices=[(conversation_label(c), c.id) for c in chats], value=conv_id)

    mic.stream(
        listen,
        inputs=[mic, listener],
        outputs=[listener, caption, turn],
        stream_every=STREAM_EVERY_S,
        time_limit=600,
    )
    mic.stop_recording(stop, inputs=[listener], outputs=[listener, caption, turn])
    turn.change(
        respond,
        inputs=[agent, conversation, user, turn],
        outputs=[conversation, chatbot, player, status],
    )
