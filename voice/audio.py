"""Audio in and out: decode any upload to float samples, resample, encode responses.

Uploads come from browsers (WebM/Opus, WAV), phones (M4A), API clients (MP3, FLAC, WAV) and
the studio's microphone. libsndfile reads WAV/FLAC/OGG without spawning anything; everything
else goes through PyAV (FFmpeg's libraries, a wheel that faster-whisper already needs). Each
failure becomes an ``AudioError`` whose message tells the person what is wrong with *their*
file, never a decoder's stack trace.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from core.errors import AudioError

MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 2
SpeechFormat = Literal["wav", "mp3", "opus", "aac", "flac", "pcm"]
MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
}
# OpenAI's ``pcm`` format is raw 16-bit little-endian mono at 24 kHz; clients rely on the rate.
PCM_RATE = 24_000
STREAMED_SIZE = 0x7FFF0000  # a WAV data size this large means 'length unknown'


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1] at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0

    def resampled(self, rate: int) -> Audio:
        return Audio(resample(self.samples, self.sample_rate, rate), rate)

    def pcm16(self) -> bytes:
        return (np.clip(self.samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


@dataclass(frozen=True)
class Decoded:
    """What a file held before it was mixed down: the checks need the channel count."""

    samples: np.ndarray  # (frames, channels) float32
    sample_rate: int
    channels: int

    def mono(self) -> Audio:
        return Audio(self.samples.mean(axis=1).astype(np.float32), self.sample_rate)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out or len(samples) == 0:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples.astype(np.float32), rate_in, rate_out, quality="HQ").astype(
        np.float32
    )


def concat(chunks: list[Audio], rate: int) -> Audio:
    parts = [c.resampled(rate).samples for c in chunks]
    return Audio(np.concatenate(parts) if parts else np.zeros(0, np.float32), rate)


def silence(seconds: float, rate: int) -> Audio:
    return Audio(np.zeros(int(seconds * rate), np.float32), rate)


# ----- decoding ----------------------------------------------------------------------------
def decode(data: bytes) -> Decoded:
    """Decode any supported container; raise ``AudioError`` naming the problem."""
    if not data:
        raise AudioError("the file is empty")
    _check_wav_complete(data)
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        samples, rate = _decode_with_av(data)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise AudioError("the file holds no audio samples")
    channels = samples.shape[1]
    if channels > MAX_CHANNELS:
        raise AudioError(
            f"unsupported channel layout: {channels} channels; send a mono or stereo recording"
        )
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"unsupported sample rate {rate} Hz: use {MIN_SAMPLE_RATE // 1000}-"
            f"{MAX_SAMPLE_RATE // 1000} kHz (16 kHz or more for a voice sample)"
        )
    if not np.isfinite(samples).all():
        raise AudioError("the file holds invalid (NaN or infinite) samples")
    return Decoded(samples, int(rate), channels)


def decode_mono(data: bytes) -> Audio:
    return decode(data).mono()


def _check_wav_complete(data: bytes) -> None:
    """libsndfile reads a cut-off WAV without complaint; its header says how long it was."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            # 0 and >= 2 GiB are what streaming writers (espeak-ng --stdout) put there
            if 0 < size < STREAMED_SIZE and pos + 8 + size > len(data):
                have = len(data) - pos - 8
                raise AudioError(
                    f"the WAV file is truncated: its header announces {size} bytes of audio "
                    f"but only {have} arrived"
                )
            return
        pos += 8 + size + (size & 1)
    raise AudioError("the WAV file is truncated: it ends before its audio data")


def _decode_with_av(data: bytes) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioError("the file has no audio track")
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or stream.rate
            channels = stream.codec_context.channels
            if channels and channels > MAX_CHANNELS:
                raise AudioError(
                    f"unsupported channel layout: {channels} channels; send a mono or stereo "
                    "recording"
                )
            frames = []
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                if arr.dtype.kind in "iu":
                    arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
                if frame.format.is_planar:
                    arr = arr.T  # (samples, channels)
                else:
                    arr = arr.reshape(-1, len(frame.layout.channels))
                frames.append(arr.astype(np.float32))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise AudioError(
            "not an audio file we can read (WAV, FLAC, OGG, MP3, M4A, WebM), or it is "
            "truncated or corrupt"
        ) from exc
    if not frames or not rate:
        raise AudioError("the file holds no audio samples (truncated or empty)")
    return np.concatenate(frames, axis=0), int(rate)


# ----- encoding ----------------------------------------------------------------------------
def encode_wav(audio: Audio) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio.samples, audio.sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def encode(audio: Audio, fmt: SpeechFormat) -> bytes:
    """Bytes in one of the formats OpenAI's speech endpoint offers."""
    if fmt == "wav":
        return encode_wav(audio)
    if fmt == "pcm":
        return audio.resampled(PCM_RATE).pcm16()
    if fmt == "flac":
        buf = io.BytesIO()
        sf.write(buf, audio.samples, audio.sample_rate, format="FLAC", subtype="PCM_16")
        return buf.getvalue()
    codec, container, rate = {
        "mp3": ("libmp3lame", "mp3", audio.sample_rate),
        "opus": ("libopus", "ogg", 48_000),
        "aac": ("aac", "adts", audio.sample_rate),
    }[fmt]
    return _encode_with_av(audio.resampled(rate), codec, container)


def _encode_with_av(audio: Audio, codec: str, container_format: str) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=audio.sample_rate, layout="mono")
        pcm = (np.clip(audio.samples, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = audio.sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()
