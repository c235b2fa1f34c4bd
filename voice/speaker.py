"""Speaker embeddings (resemblyzer's GE2E encoder, weights shipped in the wheel).

The similarity Anima reports is the cosine between two utterance embeddings: about 0.98 for
the same speaker reading other text, 0.5-0.75 between different speakers. It measures how
alike two voices sound to a speaker-verification model; it is a figure, not a guarantee.
"""

from __future__ import annotations

import threading

import numpy as np

from voice.audio import Audio

EMBED_RATE = 16_000


class SpeakerEncoder:
    def __init__(self) -> None:
        from resemblyzer import VoiceEncoder

        self._encoder = VoiceEncoder("cpu", verbose=False)
        self._lock = threading.Lock()

    def embed(self, audio: Audio) -> np.ndarray:
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(audio.resampled(EMBED_RATE).samples, source_sr=EMBED_RATE)
        if len(wav) < EMBED_RATE // 2:  # resemblyzer trims silence; too little speech left
            wav = audio.resampled(EMBED_RATE).samples
        with self._lock:
            return np.asarray(self._encoder.embed_utterance(wav), dtype=np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom else 0.0
