"""The microphone and the voice reply player under the chat.

While the microphone is on, chunks of about a quarter second stream to the server; a hidden
textbox carries each finished turn ("<nonce>\\n<transcript>"), whose change starts the reply.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui.context import StudioContext
from ui.voice_chat import handlers
from ui.wiring import wire

STREAM_EVERY_S = 0.25


def build_voice_chat(ctx: StudioContext, chat: dict[str, Any]) -> None:
    """Add the voice controls to the chat screen; ``chat`` holds its components by name."""
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

    services = ctx.services
    heard = {"listener": listener, "caption": caption, "turn": turn}
    wire(
        mic.stream,
        handlers.listen,
        services,
        inputs=[mic, listener],
        outputs=heard,
        stream_every=STREAM_EVERY_S,
        time_limit=600,
    )
    wire(mic.stop_recording, handlers.stop, services, inputs=[listener], outputs=heard)
    # Kept on ``chat`` so the chat screen can follow a voice turn (its swipe counter).
    chat["voice_reply"] = wire(
        turn.change,
        handlers.respond,
        services,
        inputs=[chat["agent"], chat["conversation"], chat["user"], turn],
        outputs={
            "conversation": chat["conversation"],
            "chatbot": chat["chatbot"],
            "player": player,
            "status": chat["status"],
        },
        as_user=True,
    )
