"""Round-trip guard: hear every synthesised sentence back and redo the ones that came out wrong.

Sampling engines (Coqui XTTS above all) sometimes skip, repeat or garble words. The guard
transcribes each sentence with the STT engine and compares the words (word error rate after
normalising case and punctuation); above ``max_wer`` it synthesises again, a little slower,
and keeps the attempt that was heard best. ``GuardStats`` counts how often that happens, so an
operator can tell whether the engine needs it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

import jiwer

from voice.audio import Audio
from voice.base import STTEngine

_WORD = re.compile(r"[^\w\s']+")


def normalise(text: str) -> str:
    return " ".join(_WORD.sub(" ", text.lower().replace("’", "'")).split())


def word_error_rate(reference: str, heard: str) -> float:
    ref, hyp = normalise(reference), normalise(heard)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp or "<nothing>"))


@dataclass
class GuardStats:
    checked: int = 0  # sentences heard back
    resynthesised: int = 0  # sentences whose first attempt was over the threshold
    retries: int = 0  # extra syntheses made
    still_over: int = 0  # sentences still over the threshold after every retry

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class RoundTripGuard:
    def __init__(
        self, stt: STTEngine, *, max_wer: float, retries: int, language: str | None
    ) -> None:
        self._stt = stt
        self._max_wer = max_wer
        self._retries = retries
        self._language = language
        self._lock = threading.Lock()
        self.stats = GuardStats()

    def run(self, text: str, synthesize: Callable[[float], Audio]) -> tuple[Audio, float]:
        """Best attempt at ``text`` and its WER; ``synthesize(speed)`` makes one attempt."""
        audio = synthesize(1.0)
        wer = self._wer(text, audio)
        best = (wer, audio)
        tries = 0
        while best[0] > self._max_wer and tries < self._retries:
            tries += 1
            attempt = synthesize(0.9)  # slower speech is more often heard right
            score = self._wer(text, attempt)
            if score < best[0]:
                best = (score, attempt)
        with self._lock:
            self.stats.checked += 1
            if tries:
                self.stats.resynthesised += 1
                self.stats.retries += tries
            if best[0] > self._max_wer:
                self.stats.still_over += 1
        return best[1], best[0]

    def _wer(self, text: str, audio: Audio) -> float:
        heard = self._stt.transcribe(audio, language=self._language).text
        return word_error_rate(text, heard)
