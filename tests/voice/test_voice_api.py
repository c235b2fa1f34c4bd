"""Voice over HTTP: a profile from a sample (stored with hash, consent and the similarity
before/after), every bad upload refused with the profile kept, and both ``/v1/audio/*``
endpoints through the official ``openai`` package."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import openai
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from container import Services
from core.principal import SYSTEM
from voice.audio import decode_mono, encode_wav
from voice.guard import word_error_rate
from voice.speaker import cosine

CONSENT = "I am the speaker in this recording and agree to its use for this agent."
LINE = "Please bring me a cup of hot tea and two slices of fresh bread."


def _upload(client: TestClient, agent_id: str, data: bytes, consent: str | None = CONSENT):
    form = {"consent": consent} if consent is not None else {}
    return client.post(
        f"/api/agents/{agent_id}/voice", files={"file": ("sample.wav", data)}, data=form
    )


def test_voice_profile_from_a_sample_and_bad_uploads_keep_it(
    client: TestClient, services: Services, reference_voices: dict[str, Path]
) -> None:
    agent = services.agents.create_agent({"name": "Kal"}, principal=SYSTEM)
    sample = reference_voices["kal"].read_bytes()

    assert client.get(f"/api/agents/{agent.id}/voice").status_code == 404
    resp = _upload(client, agent.id, sample)
    assert resp.status_code == 200, resp.text
    profile = resp.json()
    assert profile["sample_sha256"] == hashlib.sha256(sample).hexdigest()
    assert profile["consent"] == CONSENT and profile["method"] == "voice match"
    assert profile["clips"] >= 2 and 15 < profile["duration_s"] < 40
    # the voice match moves the agent's voice toward the sample, measured on held-out text
    assert profile["similarity_after"] > profile["similarity_before"] + 0.05
    assert "not a clone" in profile["note"]
    stored = client.get(f"/api/agents/{agent.id}/voice/sample")
    assert stored.status_code == 200 and decode_mono(stored.content).sample_rate == 22050

    # the agent now speaks in the matched voice, still intelligibly
    plain = services.voice.speak(None, LINE)
    matched = services.voice.speak(agent.id, LINE)
    encoder = services.voice.pool.speaker_encoder()
    target = encoder.embed(decode_mono(sample))
    assert cosine(encoder.embed(matched), target) > cosine(encoder.embed(plain), target)
    heard = services.voice.pool.stt().transcribe(matched, language="en").text
    assert word_error_rate(LINE, heard) <= 0.2

    # bad uploads: clear 4xx, the stored profile untouched
    rate = 16000
    speech = decode_mono(sample)
    bad = {
        "not audio": b"GIF89a not a sound at all" * 40,
        "truncated": sample[: len(sample) // 3],
        "too short": encode_wav(speech.resampled(rate).__class__(speech.samples[:64000], rate)),
        "silent": encode_wav(speech.__class__(np.zeros(20 * rate, np.float32), rate)),
    }
    buf = io.BytesIO()
    sf.write(buf, np.stack([speech.samples] * 4, axis=1), speech.sample_rate, format="WAV")
    bad["4 channels"] = buf.getvalue()
    folder_before = sorted(p.name for p in (services.settings.agents_dir / agent.id).rglob("*"))
    for problem, data in bad.items():
        resp = _upload(client, agent.id, data)
        assert resp.status_code == 422, (problem, resp.text)
        assert problem.split()[-1] in resp.json()["error"]["message"], resp.text
    resp = _upload(client, agent.id, sample, consent="   ")
    assert resp.status_code == 422 and "consent" in resp.json()["error"]["message"]
    assert _upload(client, agent.id, sample, consent=None).status_code == 422
    assert _upload(client, "no-such-agent", sample).status_code == 404
    assert client.get(f"/api/agents/{agent.id}/voice").json() == profile
    after = sorted(p.name for p in (services.settings.agents_dir / agent.id).rglob("*"))
    assert after == folder_before  # no stray files from refused uploads

    check = client.post("/api/voice/check", files={"file": ("x.wav", bad["silent"])})
    assert check.status_code == 200 and "silent" in " ".join(check.json()["problems"])

    # deleting the profile removes its files; deleting the agent would too
    assert client.delete(f"/api/agents/{agent.id}/voice").status_code == 204
    assert not any((services.settings.agents_dir / agent.id / "voice").iterdir())


def test_upload_size_is_capped(client: TestClient, services: Services) -> None:
    agent = services.agents.create_agent({"name": "Big"}, principal=SYSTEM)
    services.settings.voice.max_upload_mb = 0.05
    resp = _upload(client, agent.id, b"RIFF" + b"\0" * 100_000)
    assert resp.status_code == 413


def _openai(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)


def test_openai_speech_and_transcription(live_server: str, services: Services) -> None:
    agent = services.agents.create_agent({"name": "Tilde"}, principal=SYSTEM)
    client = _openai(live_server)

    speech = client.audio.speech.create(
        model="tts-1", voice=agent.id, input=LINE, response_format="wav"
    )
    audio = decode_mono(speech.content)
    assert audio.duration > 2
    transcript = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", speech.content, "audio/wav")
    )
    assert word_error_rate(LINE, transcript.text) <= 0.2

    mp3 = client.audio.speech.create(model="tts-1", voice=agent.id, input="Hello there.")
    assert decode_mono(mp3.content).duration > 0.4  # default format: mp3
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=("s.wav", speech.content), response_format="verbose_json"
    )
    assert verbose.segments and verbose.language == "en"

    # pcm streams sentence by sentence (24 kHz s16le)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="default", input="One. Two three.", response_format="pcm"
    ) as resp:
        pcm = b"".join(resp.iter_bytes())
    assert len(pcm) / 2 / 24000 > 0.8

    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="tts-1", voice="no-such-agent", input="hi")
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.audio.transcriptions.create(model="whisper-1", file=("x.wav", b"not audio" * 20))
    assert "audio" in str(err.value)
