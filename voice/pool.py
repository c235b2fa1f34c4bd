"""Loaded speech engines, shared: each TTS engine, the STT model and the speaker encoder are
built once, on first use, and kept (loading costs seconds and hundreds of MB).

If the configured TTS engine cannot be built (a missing Piper voice, a Coqui model that cannot
be downloaded offline), ``tts()`` falls back to espeak-ng and says so in the log, so speech
keeps working; ``tts_fallback_reason`` tells the API and UI why.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from core.errors import VoiceEngineError
from core.settings import Settings
from voice.base import STTEngine, TTSEngine
from voice.factory import build_stt, build_tts

log = logging.getLogger(__name__)


class VoicePool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tts: dict[str, TTSEngine] = {}
        self._stt: STTEngine | None = None
        self._encoder: Any = None
        self._lock = threading.Lock()
        self.tts_fallback_reason: str | None = None

    def tts(self, engine: str | None = None) -> TTSEngine:
        """The engine named (default: the configured one), or espeak-ng if it cannot load."""
        key = engine or self.settings.voice.tts_engine
        with self._lock:
            if key not in self._tts:
                try:
                    built = build_tts(self.settings, key)
                    _load(built)
                except VoiceEngineError as exc:
                    if key == "espeak" or engine is not None:
                        raise
                    log.warning("TTS engine %s unavailable, using espeak-ng: %s", key, exc)
                    self.tts_fallback_reason = exc.message
                    built = build_tts(self.settings, "espeak")
                self._tts[key] = built
            return self._tts[key]

    def stt(self) -> STTEngine:
        with self._lock:
            if self._stt is None:
                self._stt = build_stt(self.settings)
            return self._stt

    def speaker_encoder(self) -> Any:
        """resemblyzer's VoiceEncoder (ships its 17 MB weights): speaker embeddings."""
        with self._lock:
            if self._encoder is None:
                from voice.speaker import SpeakerEncoder

                self._encoder = SpeakerEncoder()
            return self._encoder


def _load(engine: TTSEngine) -> None:
    load = getattr(engine, "load", None)
    if callable(load):
        load()
