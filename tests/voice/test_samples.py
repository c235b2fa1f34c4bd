"""Voice samples: every bad recording is refused with a message naming the problem; a good one
is cleaned (silence trimmed, resampled) and cut into clips that cover all of it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.errors import AudioError
from voice.audio import Audio, decode, decode_mono, encode, encode_wav
from voice.profiles import CLIP_MAX_S, PROFILE_RATE, check_bytes, prepare, split_clips
from voice.sentences import SentenceCutter, speakable
from voice.vad import Endpointer


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def speech(reference_voices: dict[str, Path]) -> Audio:
    return decode_mono(reference_voices["kal"].read_bytes())


def _padded(speech: Audio, seconds_before: float = 2.0, seconds_after: float = 3.0) -> Audio:
    rate = speech.sample_rate
    rng = np.random.default_rng(0)
    before = rng.normal(0, 0.001, int(seconds_before * rate)).astype(np.float32)
    after = rng.normal(0, 0.001, int(seconds_after * rate)).astype(np.float32)
    return Audio(np.concatenate([before, speech.samples, after]), rate)


def test_good_sample_is_trimmed_resampled_and_fully_clipped(speech: Audio) -> None:
    padded = _padded(speech)
    prepared = prepare(_wav(padded.samples, padded.sample_rate))
    assert prepared.report.ok, prepared.report.problems
    assert prepared.audio.sample_rate == PROFILE_RATE
    # 5 s of leading/trailing silence gone, the speech kept
    assert speech.duration - 1.5 < prepared.audio.duration < padded.duration - 4
    clips = prepared.clips
    assert len(clips) >= 2 and all(c.duration <= CLIP_MAX_S + 0.01 for c in clips)
    # the clips are the whole sample, in order, nothing dropped
    joined = np.concatenate([c.samples for c in clips])
    assert np.array_equal(joined, prepared.audio.samples)


def test_split_clips_covers_a_three_minute_sample() -> None:
    audio = Audio(np.random.default_rng(1).normal(0, 0.1, 180 * 16000).astype(np.float32), 16000)
    clips = split_clips(audio)
    assert sum(len(c.samples) for c in clips) == len(audio.samples)
    assert len(clips) >= 18


def _problems(data: bytes) -> str:
    report = check_bytes(data)
    assert not report.ok
    with pytest.raises(AudioError) as err:
        prepare(data)
    assert report.problems[0] in err.value.message
    return " ".join(report.problems)


def test_bad_samples_are_refused_naming_the_problem(speech: Audio, tmp_path: Path) -> None:
    rate = speech.sample_rate
    good = _wav(_padded(speech).samples, rate)
    assert "not an audio file" in _problems(b"%PDF-1.7 this is a document, not audio" * 20)
    assert "truncated" in _problems(good[: len(good) // 2])
    assert "empty" in _problems(b"")
    assert "too short" in _problems(_wav(speech.samples[: 4 * rate], rate))
    long = np.tile(speech.samples, int(200 / speech.duration) + 1)[: 190 * rate]
    assert "too long" in _problems(_wav(long, rate))
    quiet = np.random.default_rng(2).normal(0, 0.0005, 20 * rate).astype(np.float32)
    assert "silent" in _problems(_wav(quiet, rate))
    loud = np.clip(_padded(speech).samples * 12, -1, 1)
    assert "clipped" in _problems(_wav(loud, rate))
    low = Audio(speech.samples, rate).resampled(8000)
    assert "8000 Hz is too low" in _problems(_wav(low.samples, 8000))
    surround = np.stack([_padded(speech).samples] * 6, axis=1)
    assert "6 channels" in _problems(_wav(surround, rate))
    # mostly noise, a little speech
    noisy = np.concatenate(
        [speech.samples[: 6 * rate], np.zeros(30 * rate, np.float32), speech.samples[: 6 * rate]]
    )
    assert "speech" in _problems(_wav(noisy, rate))


def test_decode_reads_what_browsers_and_clients_send(speech: Audio) -> None:
    clip = Audio(speech.samples[: 3 * speech.sample_rate], speech.sample_rate)
    for fmt in ("wav", "flac", "mp3", "opus", "aac"):
        back = decode(encode(clip, fmt))  # type: ignore[arg-type]
        assert back.channels == 1
        assert abs(len(back.samples) / back.sample_rate - clip.duration) < 0.2, fmt
    stereo = np.stack([clip.samples, clip.samples * 0.5], axis=1)
    decoded = decode(_wav(stereo, clip.sample_rate))
    assert decoded.channels == 2 and decoded.mono().duration == pytest.approx(clip.duration)
    assert encode_wav(clip)[:4] == b"RIFF"


def test_endpointer_ends_the_turn_after_the_silence(speech: Audio) -> None:
    rate = speech.sample_rate
    stream = np.concatenate([np.zeros(rate // 2, np.float32), speech.samples[: 5 * rate]])
    stream = np.concatenate([stream, np.zeros(2 * rate, np.float32)])
    ep = Endpointer(endpoint_ms=400, pause_ms=150)
    chunk = rate // 10
    ended_at = None
    for i in range(0, len(stream), chunk):
        if ep.feed(Audio(stream[i : i + chunk], rate)).ended:
            ended_at = (i + chunk) / rate
            break
    assert ep.in_speech and ended_at is not None
    speech_end = ep.last_speech_end_s
    assert 4.5 <= speech_end <= 5.6
    assert 0.39 <= ended_at - speech_end <= 0.6  # endpoint_ms after the speech, plus a chunk


def test_sentence_cutter_speaks_early_and_keeps_sentences_whole() -> None:
    cutter = SentenceCutter()
    text = (
        "Well now, my dear traveller, you look tired. Mr. Brown sold it for 3.50 yesterday! "
        "*smiles* Sit down"
    )
    pieces: list[str] = []
    for ch in text:  # token by token, as a model streams
        pieces += list(cutter.feed(ch))
    pieces += list(cutter.flush())
    assert pieces == [
        "Well now, my dear traveller,",
        "you look tired.",
        "Mr. Brown sold it for 3.50 yesterday!",
        "smiles Sit down",
    ]
    assert speakable("*waves* Hi, see https://x.y/z `code`") == "waves Hi, see code"
    assert speakable("Hi\x00 there\x1b[0m") == "Hi there [0m"


def test_sentence_cutter_bounds_every_piece_of_text_without_stops() -> None:
    """Text with no sentence end (or no space at all) never reaches an engine whole: a
    4,096-character run-on once cost the speech engine gigabytes."""
    for text in ["9" * 4096, "word " * 1000, "a long run on sentence without stops " * 60]:
        cutter = SentenceCutter(first_min_words=10_000)
        pieces = [*cutter.feed(text + " "), *cutter.flush()]
        assert len(pieces) > 1 and all(len(piece) <= 300 for piece in pieces)
        assert "".join(pieces).replace(" ", "") == text.replace(" ", "")  # nothing lost
