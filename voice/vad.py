"""Voice activity detection (WebRTC VAD): how much of a recording is speech, where it starts
and stops, and when a speaking user has finished their turn.

WebRTC's VAD is a small GMM that runs in microseconds per 30 ms frame, so it can judge every
chunk of a live microphone stream as it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from voice.audio import Audio

VAD_RATE = 16_000
FRAME_MS = 30
FRAME = VAD_RATE * FRAME_MS // 1000
GATE_DB = 40.0
FLOOR_DBFS = -55.0


def speech_frames(audio: Audio, aggressiveness: int = 2) -> np.ndarray:
    """One bool per 30 ms frame of ``audio``: is it speech?

    WebRTC's VAD adapts to the noise floor and keeps calling faint steady noise "speech" for
    seconds after real speech; frames more than ``GATE_DB`` below the recording's loud frames
    (or under ``FLOOR_DBFS``) are therefore never speech.
    """
    pcm = np.clip(audio.resampled(VAD_RATE).samples, -1, 1)
    pcm16 = (pcm * 32767).astype("<i2")
    vad = webrtcvad.Vad(aggressiveness)
    count = len(pcm16) // FRAME
    if count == 0:
        return np.zeros(0, dtype=bool)
    frames = (pcm16[i * FRAME : (i + 1) * FRAME].tobytes() for i in range(count))
    voiced = np.array([vad.is_speech(f, VAD_RATE) for f in frames], dtype=bool)
    rms = np.sqrt((pcm[: count * FRAME].reshape(count, FRAME) ** 2).mean(axis=1))
    level = 20 * np.log10(np.maximum(rms, 1e-9))
    loud = float(np.percentile(level, 95))
    return voiced & (level > max(FLOOR_DBFS, loud - GATE_DB))


def drop_blips(frames: np.ndarray, min_run: int = 3) -> np.ndarray:
    """``frames`` without speech runs shorter than ``min_run`` frames (90 ms): clicks and
    noise bursts the VAD calls speech, which would otherwise stop silence from being trimmed."""
    out = frames.copy()
    padded = np.concatenate([[False], frames, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start < min_run:
            out[start:end] = False
    return out


def speech_share(frames: np.ndarray) -> float:
    return float(frames.mean()) if len(frames) else 0.0


def trim_silence(
    audio: Audio, frames: np.ndarray, *, keep_ms: int = 150, max_pause_ms: int = 600
) -> Audio:
    """Drop leading and trailing silence and shorten pauses longer than ``max_pause_ms``.

    A creator's minute of recording often holds seconds of silence (before they start, while
    they read the next line); those carry no voice and would dilute the speaker embedding.
    """
    frames = drop_blips(frames)
    if not frames.any():
        return Audio(audio.samples[:0], audio.sample_rate)
    per_frame = audio.sample_rate * FRAME_MS / 1000
    keep = max(1, keep_ms // FRAME_MS)
    max_pause = max(1, max_pause_ms // FRAME_MS)
    mask = frames.copy()
    # keep a little context around speech
    for shift in range(1, keep + 1):
        mask[:-shift] |= frames[shift:]
        mask[shift:] |= frames[:-shift]
    # allow pauses up to max_pause frames; longer runs of silence are cut to max_pause
    out_frames: list[int] = []
    run = 0
    for i, voiced in enumerate(mask):
        run = 0 if voiced else run + 1
        if voiced or run <= max_pause:
            out_frames.append(i)
    first, last = np.flatnonzero(mask)[[0, -1]]
    kept = [i for i in out_frames if first <= i <= last]
    pieces = [audio.samples[int(i * per_frame) : int((i + 1) * per_frame)] for i in kept]
    return Audio(np.concatenate(pieces).astype(np.float32), audio.sample_rate)


@dataclass
class EndpointEvent:
    """What the endpointer learnt from the last chunk."""

    speech_started: bool = False  # the user began to speak
    paused: bool = False  # a short pause inside the turn: a good moment to transcribe
    ended: bool = False  # silence long enough: the user's turn is over


class Endpointer:
    """Decides, frame by frame, when a speaking user has finished.

    ``pause_ms`` of silence after speech marks a pause (the transcript so far can be made
    while the user may still go on); ``endpoint_ms`` ends the turn. ``min_speech_ms`` of
    speech is needed before anything counts, so a cough or a click does not start a turn.
    """

    def __init__(
        self,
        *,
        endpoint_ms: int = 400,
        pause_ms: int = 150,
        min_speech_ms: int = 150,
        aggressiveness: int = 2,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._endpoint = max(1, endpoint_ms // FRAME_MS)
        self._pause = max(1, min(pause_ms, endpoint_ms) // FRAME_MS)
        self._min_speech = max(1, min_speech_ms // FRAME_MS)
        self._buffer = np.zeros(0, np.int16)
        self.frames_seen = 0
        self.speech_frames = 0
        self.silence_run = 0
        self.in_speech = False
        self.last_speech_frame = -1
        self.ended = False
        self._loudest = -120.0

    @property
    def last_speech_end_s(self) -> float:
        """Seconds from the stream's start to the end of the last speech frame."""
        return (self.last_speech_frame + 1) * FRAME_MS / 1000

    def feed(self, chunk: Audio) -> EndpointEvent:
        event = EndpointEvent()
        if self.ended:
            return event
        pcm = (np.clip(chunk.resampled(VAD_RATE).samples, -1, 1) * 32767).astype("<i2")
        self._buffer = np.concatenate([self._buffer, pcm])
        while len(self._buffer) >= FRAME:
            frame, self._buffer = self._buffer[:FRAME], self._buffer[FRAME:]
            rms = float(np.sqrt(np.mean((frame.astype(np.float32) / 32767) ** 2)))
            level = 20 * np.log10(max(rms, 1e-9))
            self._loudest = max(self._loudest, level)
            voiced = self._vad.is_speech(frame.tobytes(), VAD_RATE) and level > max(
                FLOOR_DBFS, self._loudest - GATE_DB
            )
            if voiced:
                self.speech_frames += 1
                self.silence_run = 0
                self.last_speech_frame = self.frames_seen
                if not self.in_speech and self.speech_frames >= self._min_speech:
                    self.in_speech = True
                    event.speech_started = True
            else:
                self.silence_run += 1
                if self.in_speech and self.silence_run == self._pause:
                    event.paused = True
                if self.in_speech and self.silence_run >= self._endpoint:
                    self.ended = True
                    event.ended = True
                    self.frames_seen += 1
                    break
            self.frames_seen += 1
        return event
