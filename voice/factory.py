"""The one place that knows which speech engines run: chosen by ``tts_engine``/``stt_model``."""

from __future__ import annotations

from core.errors import VoiceEngineError
from core.settings import Settings
from voice.base import STTEngine, TTSEngine


def build_tts(settings: Settings, engine: str | None = None) -> TTSEngine:
    """A TTS engine for ``engine`` (default ``settings.voice.tts_engine``); loads lazily."""
    match engine or settings.voice.tts_engine:
        case "piper":
            from voice.piper_engine import PiperEngine

            return PiperEngine(settings.voice.tts_piper_voice, threads=settings.voice.tts_threads)
        case "espeak":
            from voice.espeak_engine import EspeakEngine

            return EspeakEngine(settings.voice.tts_espeak_voice)
        case "coqui":
            from voice.coqui_engine import CoquiEngine

            if not settings.voice.tts_coqui_model:
                raise VoiceEngineError(
                    "ANIMA_TTS_ENGINE=coqui needs ANIMA_TTS_COQUI_MODEL (a model folder or a "
                    "Coqui model name)"
                )
            return CoquiEngine(
                settings.voice.tts_coqui_model,
                settings.voice.tts_language,
                threads=settings.voice.tts_threads,
            )
        case other:
            raise VoiceEngineError(f"unknown TTS engine {other!r}: use piper, espeak or coqui")


def build_stt(settings: Settings) -> STTEngine:
    from voice.whisper_engine import WhisperEngine

    return WhisperEngine(
        settings.voice.stt_model,
        settings.models_dir,
        compute_type=settings.voice.stt_compute_type,
        beam_size=settings.voice.stt_beam_size,
        threads=settings.voice.tts_threads,
    )


def round_trip_guard_on(settings: Settings, engine: str | None = None) -> bool:
    """The guard's default: on for Coqui (sampled, can mumble or skip words), off else."""
    if settings.voice.tts_round_trip_guard is not None:
        return settings.voice.tts_round_trip_guard
    return (engine or settings.voice.tts_engine) == "coqui"
