"""Voice samples: the quality check a creator sees live, and the cleaned sample a profile keeps.

A sample is usable when it is 10 s to 3 min long, recorded at 16 kHz or more, mono or stereo,
not clipped, and mostly speech (WebRTC VAD). The check returns *every* problem at once with a
plain message each, so the creator can fix the recording in one go; the profile keeps the
sample resampled to ``PROFILE_RATE`` with leading, trailing and long inner silences removed,
plus the same audio cut into clips of at most ``CLIP_MAX_S`` seconds for cloning engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel

from core.errors import AudioError
from voice.audio import Audio, Decoded, decode
from voice.vad import FRAME_MS, drop_blips, speech_frames, speech_share, trim_silence

MIN_SAMPLE_S = 10.0
MAX_SAMPLE_S = 180.0
MIN_SAMPLE_RATE = 16_000
MIN_SPEECH_SHARE = 0.4
SILENT_PEAK = 0.01  # -40 dBFS
CLIP_LEVEL = 0.99
CLIP_RUN = 3  # samples in a row at full scale: a flattened peak, not one loud sample
MAX_CLIPPED_SHARE = 0.001
PROFILE_RATE = 22_050
CLIP_MAX_S = 10.0  # XTTS reads at most 10 s of each reference file
CLIP_MIN_S = 6.0


class SampleReport(BaseModel):
    """What the live quality check shows; ``problems`` empty means the sample is usable."""

    duration_s: float
    speech_s: float
    sample_rate: int
    channels: int
    peak_dbfs: float
    clipped_share: float
    speech_share: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.problems:
            return "; ".join(self.problems)
        return (
            f"{self.duration_s:.1f} s at {self.sample_rate // 1000} kHz, "
            f"{self.speech_share:.0%} speech, peak {self.peak_dbfs:.1f} dBFS: usable"
        )


@dataclass
class PreparedSample:
    report: SampleReport
    audio: Audio  # trimmed, mono, PROFILE_RATE
    clips: list[Audio] = field(default_factory=list)


def _clipped_share(samples: np.ndarray) -> float:
    """Share of samples inside runs of ``CLIP_RUN`` or more at full scale."""
    hot = np.abs(samples) >= CLIP_LEVEL
    if not hot.any():
        return 0.0
    padded = np.concatenate([[False], hot, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    runs = edges[1::2] - edges[::2]
    return float(runs[runs >= CLIP_RUN].sum()) / len(samples)


def check(decoded: Decoded) -> tuple[SampleReport, Audio, np.ndarray]:
    """Measure a decoded recording; report every problem (does not raise)."""
    problems: list[str] = []
    mono = decoded.mono()
    duration = mono.duration
    if decoded.sample_rate < MIN_SAMPLE_RATE:
        problems.append(
            f"sample rate {decoded.sample_rate} Hz is too low: record at 16 kHz or more"
        )
    if duration > MAX_SAMPLE_S:
        problems.append(
            f"the recording is too long ({duration:.0f} s): keep it under {MAX_SAMPLE_S:.0f} s"
        )
    # judge the loudest channel: clipping on one side is still clipping
    peak = float(np.max(np.abs(decoded.samples))) if decoded.samples.size else 0.0
    clipped = max(_clipped_share(decoded.samples[:, c]) for c in range(decoded.channels))
    frames = drop_blips(speech_frames(mono))
    share = speech_share(frames)
    speech_s = float(frames.sum()) * FRAME_MS / 1000
    peak_db = 20 * np.log10(peak) if peak > 0 else -120.0
    if peak < SILENT_PEAK or share < 0.05:
        problems.append("the recording is silent: no speech was found in it")
    else:
        if clipped > MAX_CLIPPED_SHARE:
            problems.append(
                f"the recording is clipped ({clipped:.1%} of samples at full scale): record "
                "again with the microphone gain lower"
            )
        if share < MIN_SPEECH_SHARE:
            problems.append(
                f"only {share:.0%} of the recording is speech: record in a quiet room and "
                "keep talking (at least 40%)"
            )
    if duration < MIN_SAMPLE_S:
        problems.append(
            f"the recording is too short ({duration:.1f} s): record at least "
            f"{MIN_SAMPLE_S:.0f} s of speech"
        )
    elif speech_s < MIN_SAMPLE_S and not any("silent" in p for p in problems):
        problems.append(
            f"the recording holds only {speech_s:.1f} s of speech: record at least "
            f"{MIN_SAMPLE_S:.0f} s"
        )
    report = SampleReport(
        duration_s=round(duration, 2),
        speech_s=round(speech_s, 2),
        sample_rate=decoded.sample_rate,
        channels=decoded.channels,
        peak_dbfs=round(float(peak_db), 1),
        clipped_share=round(clipped, 5),
        speech_share=round(share, 3),
        problems=problems,
    )
    return report, mono, frames


def check_bytes(data: bytes) -> SampleReport:
    """The live check: unreadable files become a report with one problem, not an error."""
    try:
        return check(decode(data))[0]
    except AudioError as exc:
        return SampleReport(
            duration_s=0,
            speech_s=0,
            sample_rate=0,
            channels=0,
            peak_dbfs=-120,
            clipped_share=0,
            speech_share=0,
            problems=[exc.message],
        )


def prepare(data: bytes) -> PreparedSample:
    """The cleaned sample for a profile; ``AudioError`` listing every problem if unusable."""
    report, mono, frames = check(decode(data))
    if report.problems:
        raise AudioError("voice sample refused: " + "; ".join(report.problems))
    trimmed = trim_silence(mono, frames).resampled(PROFILE_RATE)
    return PreparedSample(report=report, audio=trimmed, clips=split_clips(trimmed))


def split_clips(audio: Audio, max_s: float = CLIP_MAX_S, min_s: float = CLIP_MIN_S) -> list[Audio]:
    """The whole of ``audio`` in consecutive clips of at most ``max_s`` seconds, each cut at
    the quietest 30 ms between ``min_s`` and ``max_s`` so no word is split if avoidable."""
    rate = audio.sample_rate
    x = audio.samples
    win = rate * FRAME_MS // 1000
    clips: list[Audio] = []
    start = 0
    while len(x) - start > max_s * rate:
        lo, hi = start + int(min_s * rate), start + int(max_s * rate)
        region = x[lo:hi]
        usable = len(region) // win * win
        energy = (region[:usable].reshape(-1, win) ** 2).mean(axis=1)
        cut = lo + int(np.argmin(energy)) * win + win // 2
        clips.append(Audio(x[start:cut], rate))
        start = cut
    if len(x) > start:
        clips.append(Audio(x[start:], rate))
    return clips
