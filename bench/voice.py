"""Benchmark: speech engines, speech recognition, the voice chat loop and voice matching.

Prints four tables (medians; run by hand, a few minutes on 2 cores):

1. TTS real-time factor (synthesis time / audio duration) per engine: Piper (default),
   Piper + voice match (an agent with a voice profile), espeak-ng, and Coqui when
   ``ANIMA_TTS_COQUI_MODEL`` names a real model. Target: <= 0.15.
2. STT real-time factor and word error rate on synthesised sentences (Piper's voice, espeak-ng
   and a festival voice the STT never heard in tests). Target: WER <= 5 %.
3. The voice loop: a user question (a festival voice) is streamed in real time in 100 ms
   chunks; the time from the end of the user's speech to the first reply audio, with its
   parts (endpoint wait, transcript ready, first reply piece, its synthesis). Target: <= 1.0 s.
4. Speaker similarity (resemblyzer cosine) of the agent's voice to a creator's sample before
   and after voice matching, on three festival reference voices, none of them Piper's.

    .venv/bin/python bench/voice.py [--turns 3] [--sentences 8]

Needs Debian festival + festvox voices (``make install-test`` / ``scripts/bootstrap.sh
--test`` installs them). The machine's load moves absolute numbers a lot: compare ratios and
read the load printed beside the tables. The "CPU s per audio s" columns count the process's
CPU time, which other processes barely change: on an idle machine the wall-clock RTF lies
between that figure divided by the threads used (2) and that figure itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from container import build_services
from core.principal import SYSTEM
from core.settings import Settings
from tests.voice.speakers import FESTIVAL_VOICES, festival_samples, festival_say
from voice import match
from voice.audio import Audio, decode_mono
from voice.guard import normalise
from voice.profiles import prepare
from voice.service import CALIBRATION_TEXT, HELD_OUT_TEXT

SENTENCES = [
    "Please bring me a cup of hot tea and two slices of fresh bread.",
    "The ship left the harbour at dawn and sailed toward the northern islands.",
    "I have never seen a dragon, but my grandmother swore she met one.",
    "Keep your voice down, the guards are sleeping in the next room.",
    "We will need rope, a lantern and enough food for three days.",
    "The library closes at nine, so we should hurry if you want that book.",
    "Her laughter filled the tavern and even the old sailor smiled.",
    "Do you remember the song we used to sing by the river every summer?",
    "Turn left at the old mill and follow the path until you reach the bridge.",
    "Nobody knows who built the tower or why it has no doors.",
]
QUESTIONS = [
    "Hello there. What is your name?",
    "Where are we going tonight?",
    "Can you tell me a short story?",
    "What do you like to eat?",
    "Why is the sea so rough today?",
]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} cores"


def cpu_time() -> float:
    """CPU seconds of this process and of the children it waited for (espeak-ng)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalise(r) for r in refs], [normalise(h) or "-" for h in hyps]))


def bench_tts(
    svc, sentences: list[str], agent_id: str | None
) -> list[tuple[str, float, float, float]]:  # type: ignore[no-untyped-def]
    rows = []
    engines = [("piper", "piper"), ("espeak", "espeak")]
    if svc.settings.voice.tts_coqui_model:
        engines.append(("coqui", "coqui"))
    for label, name in engines:
        engine = svc.voice.pool.tts(name)
        engine.synthesize("Warm up.")
        rtfs, cpus, total = [], [], 0.0
        for text in sentences:
            t, c = time.perf_counter(), cpu_time()
            audio = engine.synthesize(text)
            rtfs.append((time.perf_counter() - t) / audio.duration)
            cpus.append((cpu_time() - c) / audio.duration)
            total += audio.duration
        rows.append((label, median(rtfs), median(cpus), total / len(sentences)))
    if agent_id:
        svc.voice.speak_piece(agent_id, "Warm up.")
        rtfs, cpus, total = [], [], 0.0
        for text in sentences:
            t, c = time.perf_counter(), cpu_time()
            audio = svc.voice.speak_piece(agent_id, text)
            rtfs.append((time.perf_counter() - t) / audio.duration)
            cpus.append((cpu_time() - c) / audio.duration)
            total += audio.duration
        rows.append(("piper + voice match", median(rtfs), median(cpus), total / len(sentences)))
    return rows


def bench_stt(svc, sentences: list[str], tmp: Path) -> list[tuple[str, float, float, float]]:  # type: ignore[no-untyped-def]
    stt = svc.voice.pool.stt()
    voices: dict[str, list[Audio]] = {
        "piper (joe)": [svc.voice.pool.tts("piper").synthesize(s) for s in sentences],
        "espeak-ng": [svc.voice.pool.tts("espeak").synthesize(s) for s in sentences],
        "festival kal": [
            decode_mono(festival_say(s, FESTIVAL_VOICES["kal"], tmp / f"s{i}.wav").read_bytes())
            for i, s in enumerate(sentences)
        ],
    }
    stt.transcribe(voices["piper (joe)"][0], language="en")  # load + warm
    rows = []
    for label, audios in voices.items():
        rtfs, cpus, hyps = [], [], []
        for audio in audios:
            t, c = time.perf_counter(), cpu_time()
            hyps.append(stt.transcribe(audio, language="en").text)
            rtfs.append((time.perf_counter() - t) / audio.duration)
            cpus.append((cpu_time() - c) / audio.duration)
        rows.append((label, median(rtfs), median(cpus), wer(sentences, hyps)))
    return rows


def bench_loop(svc, turns: int, tmp: Path) -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    """Stream a question in real time; time end of speech -> first reply audio."""
    agent = svc.agents.create_agent(
        {
            "name": "Mara",
            "description": "{{char}} is a cheerful ship's navigator who answers briefly.",
            "first_mes": "Ahoy!",
            "generation": {"max_new_tokens": 40},
        },
        principal=SYSTEM,
    )
    svc.llm.get().load()  # the model is loaded before anyone speaks, as in the app
    warm = svc.chat.create_conversation(agent.id, principal=SYSTEM).id
    list(svc.voice.reply(warm, "Hi.", principal=SYSTEM))  # warm every path
    results = []
    for i in range(turns):
        question = QUESTIONS[i % len(QUESTIONS)]
        wav = festival_say(question, FESTIVAL_VOICES["ked"], tmp / f"q{i}.wav")
        spoken = decode_mono(wav.read_bytes()).resampled(16000)
        rate = 16000
        stream = np.concatenate(
            [np.zeros(rate // 2, np.float32), spoken.samples, np.zeros(2 * rate, np.float32)]
        )
        conv = svc.chat.create_conversation(agent.id, principal=SYSTEM)
        listener = svc.voice.listener()
        chunk = rate // 10
        cpu_at: list[tuple[float, float]] = []  # (stream seconds fed, process CPU time)
        start = time.perf_counter()
        for j in range(0, len(stream), chunk):
            # a microphone delivers each chunk once it has been spoken
            wait = start + (j + chunk) / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            cpu_at.append(((j + chunk) / rate, cpu_time()))
            if listener.feed(Audio(stream[j : j + chunk], rate)):
                break
        ended = time.perf_counter()
        speech_end = start + listener.speech_end_s
        heard = listener.finish()
        transcribed = time.perf_counter()
        first_piece = None
        for event in svc.voice.reply(conv.id, heard.text, principal=SYSTEM):
            if event.kind == "audio":
                first_piece = event
                break
        first_audio = time.perf_counter()
        cpu_end = cpu_time()
        cpu_start = next(c for s, c in cpu_at if s >= listener.speech_end_s)
        assert first_piece is not None and first_piece.audio is not None
        results.append(
            {
                "first_audio": first_audio - speech_end,
                "endpoint": ended - speech_end,
                "transcript": transcribed - speech_end,
                "reply_piece": first_audio - transcribed,
                "piece_audio_s": first_piece.audio.duration,
                "cpu_s": cpu_end - cpu_start,
                "early": float(listener.early_transcripts >= 1),
            }
        )
    return results


def bench_similarity(svc, samples: dict[str, Path]) -> list[tuple[str, float, float, float]]:  # type: ignore[no-untyped-def]
    engine = svc.voice.pool.tts("piper")
    encoder = svc.voice.pool.speaker_encoder()
    calibration = engine.synthesize(CALIBRATION_TEXT)
    held_out = engine.synthesize(HELD_OUT_TEXT)
    rows = []
    for name, path in samples.items():
        prepared = prepare(path.read_bytes())
        embedding = encoder.embed(prepared.audio)
        result = match.fit(engine.name, calibration, held_out, prepared.audio, embedding, encoder)
        rows.append((name, result.similarity_before, result.similarity_after, result.params.alpha))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=3, help="voice-loop turns to time")
    parser.add_argument("--sentences", type=int, default=8, help="sentences for TTS/STT")
    args = parser.parse_args()
    sentences = (SENTENCES * 3)[: args.sentences]

    base = Settings()
    with tempfile.TemporaryDirectory(prefix="anima-bench-voice-") as tmp_name:
        tmp = Path(tmp_name)
        settings = base.model_copy(
            update={
                "data_dir": tmp / "data",
                "model_cache_dir": base.models_dir.resolve(),
                "llm_preload": False,
                "tts_round_trip_guard": False,
            }
        )
        svc = build_services(settings)
        try:
            print(f"# bench/voice.py  ({load()})\n")
            samples = festival_samples(tmp)
            agent = svc.agents.create_agent({"name": "Kal"}, principal=SYSTEM)
            t = time.perf_counter()
            svc.voice.set_profile(
                agent.id,
                samples["kal"].read_bytes(),
                "benchmark: festival voice kal",
                principal=SYSTEM,
            )
            profile_s = time.perf_counter() - t

            print("## TTS real-time factor (median per sentence; target <= 0.15)\n")
            print("| engine | RTF (wall) | CPU s per audio s | mean audio s |\n|---|---|---|---|")
            for label, rtf, cpu, dur in bench_tts(svc, sentences, agent.id):
                print(f"| {label} | {rtf:.3f} | {cpu:.3f} | {dur:.2f} |")
            if not settings.voice.tts_coqui_model:
                print("| coqui | not run: set ANIMA_TTS_COQUI_MODEL to a model folder | |")
            print(
                f"\nvoice profile creation (check, trim, embed, fit voice match): {profile_s:.1f} s"
            )

            print("\n## STT: faster-whisper, bundled Whisper base int8 (target WER <= 5 %)\n")
            print("| speech | RTF (wall) | CPU s per audio s | WER |\n|---|---|---|---|")
            for label, rtf, cpu, err in bench_stt(svc, sentences, tmp):
                print(f"| {label} | {rtf:.3f} | {cpu:.3f} | {err:.1%} |")

            print(f"\n## Voice loop: end of user speech -> first reply audio ({load()})\n")
            loop = bench_loop(svc, args.turns, tmp)
            print("| part | median s |\n|---|---|")
            for key, label in [
                ("endpoint", "VAD endpoint decided (400 ms of silence)"),
                ("transcript", "transcript ready"),
                ("reply_piece", "LLM first piece + its synthesis (after transcript)"),
                ("first_audio", "**first reply audio** (target <= 1.0)"),
                ("piece_audio_s", "length of the first piece (audio s)"),
                ("cpu_s", "CPU s this process used from end of speech to first audio"),
            ]:
                print(f"| {label} | {median([r[key] for r in loop]):.2f} |")
            early = sum(r["early"] for r in loop)
            print(f"\ntranscribed during the pause, before the endpoint: {early:.0f}/{len(loop)}")
            print("per turn first audio:", ", ".join(f"{r['first_audio']:.2f}" for r in loop))

            print("\n## Speaker similarity to the sample (resemblyzer cosine, held-out text)\n")
            print("| reference voice | before | after voice match | alpha |\n|---|---|---|---|")
            for name, before, after, alpha in bench_similarity(svc, samples):
                voice = FESTIVAL_VOICES[name]
                print(f"| {voice} | {before:.3f} | {after:.3f} | {alpha:.2f} |")
            print(f"\n({load()})")
        finally:
            svc.close()


if __name__ == "__main__":
    main()
