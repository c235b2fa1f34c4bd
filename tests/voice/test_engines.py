"""Speech engines: each one speaks words that Whisper hears back; the bundled Whisper model
is joined once; Coqui loads a tiny random checkpoint through the same code as real models
and XTTS cloning conditions on the whole sample; the round-trip guard redoes bad sentences."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from core.errors import VoiceEngineError
from core.settings import Settings
from voice.audio import Audio, concat, decode_mono
from voice.base import CloneReference, STTEngine, TTSEngine
from voice.bundled import WHISPER_BASE_DIR, whisper_base
from voice.factory import build_tts, round_trip_guard_on
from voice.guard import RoundTripGuard, word_error_rate
from voice.piper_engine import MAX_PHONEMES, split_phonemes
from voice.pool import VoicePool
from voice.profiles import split_clips

SENTENCE = "Please bring me a cup of hot tea and two slices of fresh bread."


def _heard(stt: STTEngine, audio: Audio) -> float:
    return word_error_rate(SENTENCE, stt.transcribe(audio, language="en").text)


@pytest.mark.parametrize("engine", ["piper", "espeak"])
def test_engine_speaks_words_whisper_hears_back(voice_pool: VoicePool, engine: str) -> None:
    tts = voice_pool.tts(engine)
    assert isinstance(tts, TTSEngine) and not tts.supports_cloning
    audio = tts.synthesize(SENTENCE)
    assert audio.sample_rate == tts.sample_rate and 2.0 < audio.duration < 8.0
    assert _heard(voice_pool.stt(), audio) <= 0.2
    # Piper draws its phoneme durations with noise, so one synthesis can run 10 % long or
    # short: a clearly slower speed keeps the comparison about speed, not about that noise.
    slower = tts.synthesize(SENTENCE, speed=0.6)
    assert slower.duration > audio.duration * 1.25


def test_bundled_whisper_is_joined_once_even_when_two_start_together(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(whisper_base(tmp_path))) for _ in "ab"
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folder = tmp_path / WHISPER_BASE_DIR
    assert results == [folder, folder]
    model = folder / "model.bin"
    stamp = model.stat().st_mtime_ns
    assert model.stat().st_size == 145_217_532
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        WHISPER_BASE_DIR
    ]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [f".{WHISPER_BASE_DIR}.lock"]  # no half-built staging folder
    assert whisper_base(tmp_path) == folder and model.stat().st_mtime_ns == stamp  # not redone


def test_unknown_models_fail_with_a_clear_message(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, tts_engine="coqui")
    with pytest.raises(VoiceEngineError, match="ANIMA_TTS_COQUI_MODEL"):
        build_tts(settings)
    missing = Settings(data_dir=tmp_path, tts_engine="coqui", tts_coqui_model=str(tmp_path))
    with pytest.raises(VoiceEngineError, match=r"no config\.json"):
        build_tts(missing).synthesize("hi")  # type: ignore[attr-defined]
    with pytest.raises(VoiceEngineError, match="not found"):
        build_tts(Settings(data_dir=tmp_path, tts_piper_voice=str(tmp_path / "x.onnx")))
    # the app keeps talking: a broken configured engine falls back to espeak-ng
    pool = VoicePool(Settings(data_dir=tmp_path, tts_engine="coqui"))
    assert pool.tts().name.startswith("espeak") and "COQUI_MODEL" in (
        pool.tts_fallback_reason or ""
    )
    assert round_trip_guard_on(Settings(tts_engine="coqui"))
    assert not round_trip_guard_on(Settings(tts_engine="piper"))


# ----- Coqui -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_vits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.voice.tiny_coqui import build_tiny_vits

    return build_tiny_vits(tmp_path_factory.mktemp("tiny-vits"))


@pytest.fixture(scope="session")
def tiny_xtts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.voice.tiny_coqui import build_tiny_xtts

    return build_tiny_xtts(tmp_path_factory.mktemp("tiny-xtts"))


def test_coqui_loads_a_local_vits_folder_through_the_settings(tiny_vits: Path) -> None:
    settings = Settings(tts_engine="coqui", tts_coqui_model=str(tiny_vits))
    engine = build_tts(settings)
    audio = engine.synthesize("hello there, how are you")
    assert audio.sample_rate == 16000 and not engine.supports_cloning
    assert audio.duration > 0.3 and np.isfinite(audio.samples).all()
    assert float(np.abs(audio.samples).max()) > 0  # random weights: sound, not words


def test_xtts_cloning_conditions_on_the_whole_sample(
    tiny_xtts: Path, reference_voices: dict[str, Path], tmp_path: Path
) -> None:
    from voice.audio import encode_wav

    engine = build_tts(Settings(tts_engine="coqui", tts_coqui_model=str(tiny_xtts)))
    assert engine.supports_cloning
    kal = decode_mono(reference_voices["kal"].read_bytes()).resampled(22050)
    slt = decode_mono(reference_voices["slt"].read_bytes()).resampled(22050)
    head = Audio(kal.samples[: 14 * 22050], 22050)

    def reference(name: str, tail: Audio) -> CloneReference:
        whole = concat([head, tail], 22050)
        clips = []
        for i, clip in enumerate(split_clips(whole)):
            path = tmp_path / name / f"clip-{i}.wav"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(encode_wav(clip))
            clips.append(path)
        return CloneReference(name, clips, whole.duration, tmp_path / name)

    # same first 14 s, different speakers after that
    a = reference("a", Audio(kal.samples[14 * 22050 :], 22050))
    b = reference("b", Audio(slt.samples[: 12 * 22050], 22050))
    assert len(a.clips) >= 3
    gpt_a, spk_a = engine.conditioning(a)  # type: ignore[attr-defined]
    gpt_b, spk_b = engine.conditioning(b)  # type: ignore[attr-defined]
    # XTTS's defaults (first 10-12 s) would make these equal
    assert not np.allclose(gpt_a.numpy(), gpt_b.numpy())
    assert not np.allclose(spk_a.numpy(), spk_b.numpy())
    assert list((tmp_path / "a").glob("coqui-*.pt"))  # computed once, cached with the profile
    audio = engine.synthesize("hello there", reference=a)
    assert audio.sample_rate == 24000 and audio.duration > 0


# ----- round-trip guard ------------------------------------------------------------------
class _Garbling:
    """Failure injection: the first attempt at each sentence says other words."""

    def __init__(self, real: TTSEngine) -> None:
        self.real = real
        self.calls = 0

    def __call__(self, speed: float) -> Audio:
        self.calls += 1
        text = "purple elephants dance quietly" if self.calls == 1 else SENTENCE
        return self.real.synthesize(text, speed=speed)


def test_round_trip_guard_resynthesises_and_counts(voice_pool: VoicePool) -> None:
    guard = RoundTripGuard(voice_pool.stt(), max_wer=0.25, retries=1, language="en")
    garbling = _Garbling(voice_pool.tts("espeak"))
    audio, wer = guard.run(SENTENCE, garbling)
    assert garbling.calls == 2 and wer <= 0.25 and audio.duration > 1
    good, _ = guard.run(SENTENCE, lambda speed: voice_pool.tts("espeak").synthesize(SENTENCE))
    assert good.duration > 1
    assert guard.stats.as_dict() == {
        "checked": 2,
        "resynthesised": 1,
        "retries": 1,
        "still_over": 0,
    }


def test_a_run_on_sentence_is_spoken_in_bounded_model_calls(voice_pool: VoicePool) -> None:
    """A sentence far longer than one model call is spoken whole, in parts of at most
    MAX_PHONEMES (memory grows faster than the input: 1,500 phonemes took 5.4 GB)."""
    tts = voice_pool.tts("piper")
    voice = tts.load()
    seen: list[int] = []
    real = voice.phonemes_to_ids

    def counting(phonemes: list[str]) -> list[int]:
        seen.append(len(phonemes))
        return real(phonemes)

    run_on = " ".join(["the old sailor counted the waves"] * 25)  # 150 words, no stop
    voice.phonemes_to_ids = counting  # observe the real calls; the model still runs
    try:
        audio = tts.synthesize(run_on)
    finally:
        del voice.phonemes_to_ids
    assert len(seen) > 1 and max(seen) <= MAX_PHONEMES
    assert sum(seen) > 600 and audio.duration > 25.0  # all of it was spoken

    parts = split_phonemes(list("ab cd ef gh"), limit=4)
    assert parts == [list("ab "), list("cd "), list("ef "), list("gh")]
    assert split_phonemes(list("abcdefgh"), limit=3) == [list("abc"), list("def"), list("gh")]
