"""The voice chat loop's moving parts: listening while the user talks, speaking while the
agent is still writing.

``Listener`` takes microphone audio in chunks as it arrives. WebRTC VAD finds the end of the
user's turn (``endpoint_ms`` of silence); at each short pause before that it already starts
transcribing what was said so far in a background thread, so by the time the silence is long
enough to end the turn the transcript is usually ready and the reply can start at once.

``speak_reply`` turns a stream of text deltas into events: text as it comes, and a spoken
piece as soon as each sentence (the first one: each clause) is complete. The language model
generates in its own thread, so it keeps writing while a piece is synthesised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from voice.audio import Audio
from voice.base import STTEngine, Transcript
from voice.sentences import SentenceCutter
from voice.vad import Endpointer

EventKind = Literal["transcript", "text", "audio", "done"]


@dataclass
class VoiceEvent:
    """One step of a voice turn; ``at`` is seconds since the turn's reply began."""

    kind: EventKind
    text: str = ""
    audio: Audio | None = None
    at: float = 0.0
    data: dict[str, object] = field(default_factory=dict)


class Listener:
    """Feed it microphone chunks; it tells when the turn ended and what was said."""

    def __init__(
        self,
        stt: STTEngine,
        *,
        language: str | None = None,
        endpoint_ms: int = 400,
        pause_ms: int = 150,
        aggressiveness: int = 2,
        rate: int = 16_000,
    ) -> None:
        self._stt = stt
        self._language = language
        self._endpointer = Endpointer(
            endpoint_ms=endpoint_ms, pause_ms=pause_ms, aggressiveness=aggressiveness
        )
        self._rate = rate
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="listen")
        self._job: Future[Transcript] | None = None
        self._job_covers = 0  # samples the running/finished job transcribes
        self._lock = threading.Lock()
        self.partial = ""
        self.early_transcripts = 0

    @property
    def ended(self) -> bool:
        return self._endpointer.ended

    @property
    def heard_speech(self) -> bool:
        return self._endpointer.in_speech

    @property
    def speech_end_s(self) -> float:
        """Where, in the stream, the user stopped speaking."""
        return self._endpointer.last_speech_end_s

    def feed(self, chunk: Audio) -> bool:
        """Add a chunk; True once the turn has ended (later chunks are ignored)."""
        if self.ended:
            return True
        samples = chunk.resampled(self._rate).samples
        with self._lock:
            self._chunks.append(samples)
            self._samples += len(samples)
        event = self._endpointer.feed(Audio(samples, self._rate))
        if event.paused or event.ended:
            self._transcribe_so_far()
        return self.ended

    def audio(self) -> Audio:
        with self._lock:
            data = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return Audio(data, self._rate)

    def _transcribe_so_far(self) -> None:
        if self._job is not None and not self._job.done():
            return  # one at a time; ``finish`` runs a fresh one if this falls short
        audio = self.audio()
        self._job_covers = len(audio.samples)
        self._job = self._pool.submit(self._run, audio)

    def _run(self, audio: Audio) -> Transcript:
        result = self._stt.transcribe(audio, language=self._language)
        self.partial = result.text
        self.early_transcripts += 1
        return result

    def finish(self) -> Transcript:
        """The transcript of everything said; reuses the early one when it covers the speech."""
        try:
            speech_end = int(self.speech_end_s * self._rate)
            if self._job is not None and self._job_covers >= speech_end:
                return self._job.result()
            return self._stt.transcribe(self.audio(), language=self._language)
        finally:
            self._pool.shutdown(wait=False)


def speak_reply(
    deltas: Iterable[str],
    speak: Callable[[str], Audio],
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[VoiceEvent]:
    """Text events as the reply streams, and an audio event per completed piece."""
    start = clock()
    cutter = SentenceCutter()
    for delta in deltas:
        yield VoiceEvent("text", text=delta, at=clock() - start)
        for piece in cutter.feed(delta):
            audio = speak(piece)
            yield VoiceEvent("audio", text=piece, audio=audio, at=clock() - start)
    for piece in cutter.flush():
        yield VoiceEvent("audio", text=piece, audio=speak(piece), at=clock() - start)
