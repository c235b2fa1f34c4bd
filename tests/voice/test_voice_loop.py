"""The voice chat loop: the user's turn is transcribed while they talk and ended by VAD; the
reply is spoken piece by piece, the first piece before the language model has finished."""

from __future__ import annotations

import numpy as np
import pytest

from container import Services
from core.principal import SYSTEM
from voice.audio import Audio
from voice.guard import word_error_rate
from voice.sentences import speakable

pytestmark = pytest.mark.model

QUESTION = "Tell me a long story about the sea and your old ship."


def test_listener_transcribes_during_the_pause_and_ends_the_turn(services: Services) -> None:
    voice = services.voice
    spoken = voice.pool.tts().synthesize(QUESTION).resampled(16000)
    rate = 16000
    stream = np.concatenate(
        [np.zeros(rate // 2, np.float32), spoken.samples, np.zeros(2 * rate, np.float32)]
    )
    listener = voice.listener()
    chunk = rate // 10  # the browser sends about 100 ms at a time
    fed = 0
    for i in range(0, len(stream), chunk):
        fed = i + chunk
        if listener.feed(Audio(stream[i : i + chunk], rate)):
            break
    assert listener.ended and listener.heard_speech
    speech_end = 0.5 + spoken.duration
    assert abs(listener.speech_end_s - speech_end) < 0.35
    assert fed / rate - listener.speech_end_s < 0.6  # endpoint 400 ms (+ one chunk)
    heard = listener.finish()
    assert listener.early_transcripts >= 1  # started on the pause, before the endpoint
    assert word_error_rate(QUESTION, heard.text) <= 0.2


def test_reply_audio_starts_before_the_reply_ends(services: Services) -> None:
    agent = services.agents.create_agent(
        {
            "name": "Mara",
            "description": "{{char}} is an old sailor who loves telling long, detailed stories.",
            "first_mes": "Ahoy there!",
            "generation": {"max_new_tokens": 32, "temperature": 0.0, "seed": 3},
        },
        principal=SYSTEM,
    )
    conv = services.chat.create_conversation(agent.id, principal=SYSTEM)
    events = list(services.voice.reply(conv.id, QUESTION, principal=SYSTEM))

    kinds = [e.kind for e in events]
    assert kinds[0] == "transcript" and kinds[-1] == "done"
    first_audio = kinds.index("audio")
    last_text = max(i for i, k in enumerate(kinds) if k == "text")
    assert first_audio < last_text, kinds  # spoke while the model was still writing
    assert events[first_audio].at < events[last_text].at

    pieces = [e for e in events if e.kind == "audio"]
    assert len(pieces) >= 2
    assert all(e.audio is not None and e.audio.duration > 0.2 for e in pieces)
    full = events[-1].text
    assert " ".join(e.text for e in pieces) == speakable(full)
    stored = services.chat.get_conversation(conv.id, principal=SYSTEM).messages
    assert [m.role for m in stored][-2:] == ["user", "assistant"]
    assert stored[-2].content == QUESTION and stored[-1].content == full
