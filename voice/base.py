"""The seams every speech engine sits behind: ``TTSEngine`` and ``STTEngine``.

Engines differ in where their voice comes from (a bundled Piper voice, espeak-ng's formant
synthesiser, a Coqui model that clones from a sample) and in how they hear (faster-whisper
on any CTranslate2 Whisper model). Callers see only these protocols; ``voice.factory`` picks
the implementation from settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from voice.audio import Audio


@dataclass(frozen=True)
class CloneReference:
    """What a cloning engine needs from a voice profile.

    ``clips`` cover the *whole* sample in pieces short enough for the engine's reference
    window (XTTS reads at most ``max_ref_len`` seconds per file), so no part of what the
    creator recorded is dropped. ``key`` changes whenever the sample does, so cached
    conditioning can be keyed on it; ``cache_dir`` is where an engine may keep such a cache.
    """

    key: str
    clips: list[Path]
    duration_s: float
    cache_dir: Path


@runtime_checkable
class TTSEngine(Protocol):
    """Text to speech. Implementations must be safe to call from several threads."""

    @property
    def name(self) -> str:
        """Stable id of the engine and voice (keys voice-match parameters per engine)."""
        ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def supports_cloning(self) -> bool:
        """True when ``synthesize`` speaks in the voice of ``reference`` by itself."""
        ...

    def synthesize(
        self, text: str, *, reference: CloneReference | None = None, speed: float = 1.0
    ) -> Audio:
        """Speak ``text`` (one sentence or a few); ``speed`` > 1 is faster."""
        ...


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration_s: float
    segments: list[Segment] = field(default_factory=list)


@runtime_checkable
class STTEngine(Protocol):
    """Speech to text. Implementations must be safe to call from several threads."""

    @property
    def name(self) -> str: ...

    def transcribe(self, audio: Audio, *, language: str | None = None) -> Transcript:
        """The words in ``audio`` (any rate; engines resample). ``language=None`` detects."""
        ...
