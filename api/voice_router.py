"""Voice routes: OpenAI-compatible ``/v1/audio/*`` and an agent's voice profile under
``/api/agents/{id}/voice``. Only HTTP translation here; ``voice.service`` does the work.

Audio work takes seconds of CPU, so every call into the voice service runs in the thread
pool, never on the event loop; uploads are read through the size-capped ``read_upload``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile, status
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import AgentOwner, Caller, read_upload, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from container import Services
from voice.audio import MEDIA_TYPES, PCM_RATE, SpeechFormat, encode
from voice.base import Transcript
from voice.profiles import SampleReport
from voice.service import VoiceProfileView

router = APIRouter(
    tags=["voice"], responses=error_responses(*GUARD_ERRORS, *OWNER_ERRORS, 404, 409, 502)
)
Svc = Annotated[Services, Depends(services)]
DEFAULT_VOICE = "default"


class SpeechRequest(BaseModel):
    """OpenAI's ``audio.speech.create`` body; ``voice`` is an agent id (``default``: the
    engine's own voice). ``model`` is accepted for compatibility and not used."""

    model: str = "tts-1"
    input: str = Field(min_length=1, max_length=4096)
    voice: str = Field(description="An agent id (GET /v1/models), or 'default'.")
    response_format: SpeechFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None


# ----- OpenAI-compatible ------------------------------------------------------------------
@router.post(
    "/v1/audio/speech",
    response_class=Response,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
)
async def create_speech(svc: Svc, body: SpeechRequest, principal: Caller) -> Response:
    """Speech in the agent's voice. ``pcm`` (24 kHz s16le) streams sentence by sentence;
    other formats arrive whole."""
    started = time.monotonic()
    agent_id = None if body.voice == DEFAULT_VOICE else body.voice
    request_id = uuid.uuid4().hex
    record = partial(
        svc.usage.record,
        principal=principal,
        agent_id=agent_id,
        route="v1.audio.speech",
        request_id=request_id,
    )
    # A priced agent's voice: the worst case is held first (402), the speech made is charged.
    held = (
        await run_in_threadpool(
            partial(svc.economy.hold_speech, agent_id, principal=principal, seconds=_worst_s(body))
        )
        if agent_id
        else []
    )

    def meter(*, audio_seconds: float, **measured: Any) -> None:
        record(audio_seconds=audio_seconds, **measured)
        for r in held:
            svc.economy.charge(r, request_id, audio_seconds=audio_seconds)

    media = MEDIA_TYPES[body.response_format]
    if body.response_format == "pcm":
        try:
            pieces = svc.voice.speak_stream(agent_id, body.input, body.speed)
            first = await run_in_threadpool(next, pieces, None)  # errors become 4xx before 200
        except BaseException:
            svc.economy.release(held)
            raise

        def stream() -> Iterator[bytes]:
            seconds, outcome = 0.0, "cancelled"
            try:
                if first is not None:
                    seconds += first.duration
                    yield encode(first, "pcm")
                for piece in pieces:
                    seconds += piece.duration
                    yield encode(piece, "pcm")
                outcome = "ok"
            finally:
                meter(audio_seconds=seconds, latency_s=time.monotonic() - started, outcome=outcome)

        return StreamingResponse(
            stream(), media_type=media, headers={"X-Sample-Rate": str(PCM_RATE)}
        )
    try:
        audio = await run_in_threadpool(svc.voice.speak, agent_id, body.input, body.speed)
        content = await run_in_threadpool(encode, audio, body.response_format)
    except BaseException:
        svc.economy.release(held)
        raise
    meter(audio_seconds=audio.duration, latency_s=time.monotonic() - started)
    return Response(content, media_type=media)


def _worst_s(body: SpeechRequest) -> float:
    """A generous bound on the speech's length: six characters a second at speed 1."""
    return len(body.input) / 6 / body.speed + 2


TranscriptionFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]


@router.post("/v1/audio/transcriptions")
async def create_transcription(
    svc: Svc,
    principal: Caller,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()] = "whisper-1",
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[TranscriptionFormat, Form()] = "json",
    temperature: Annotated[float | None, Form()] = None,
) -> Any:
    """Text of an uploaded recording (WAV, FLAC, OGG, MP3, M4A, WebM). ``model`` is accepted
    for compatibility; the server's configured STT model is used."""
    content = await read_upload(file, svc.settings.voice.max_upload_bytes)
    started = time.monotonic()
    result: Transcript = await run_in_threadpool(svc.voice.transcribe, content, language)
    svc.usage.record(
        principal=principal,
        agent_id=None,
        route="v1.audio.transcriptions",
        audio_seconds=result.duration_s,
        latency_s=time.monotonic() - started,
    )
    if response_format == "text":
        return PlainTextResponse(result.text)
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(_subtitles(result, response_format))
    if response_format == "verbose_json":
        return {
            "task": "transcribe",
            "language": result.language,
            "duration": round(result.duration_s, 3),
            "text": result.text,
            "segments": [
                {"id": i, "start": s.start, "end": s.end, "text": s.text}
                for i, s in enumerate(result.segments)
            ],
        }
    return {"text": result.text}


def _subtitles(result: Transcript, fmt: str) -> str:
    def stamp(t: float) -> str:
        h, rem = divmod(t, 3600)
        m, s = divmod(rem, 60)
        sep = "," if fmt == "srt" else "."
        return f"{int(h):02d}:{int(m):02d}:{int(s):02d}{sep}{round((s % 1) * 1000):03d}"

    lines = ["WEBVTT", ""] if fmt == "vtt" else []
    for i, seg in enumerate(result.segments, 1):
        if fmt == "srt":
            lines.append(str(i))
        lines += [f"{stamp(seg.start)} --> {stamp(seg.end)}", seg.text, ""]
    return "\n".join(lines)


# ----- voice profiles ---------------------------------------------------------------------
@router.post("/api/agents/{agent_id}/voice", response_model=VoiceProfileView)
async def set_voice(
    svc: Svc,
    agent_id: str,
    file: Annotated[UploadFile, File(description="10 s to 3 min of the voice, any format.")],
    consent: Annotated[
        str,
        Form(
            description="The creator's statement that the voice is theirs or used with the "
            "speaker's permission; stored with the profile."
        ),
    ],
    principal: AgentOwner,
) -> VoiceProfileView:
    """Make a recording the agent's voice: checked, cleaned, stored with its hash and the
    consent; answers with the profile and how similar the agent's voice now is to it."""
    content = await read_upload(file, svc.settings.voice.max_upload_bytes)
    return await run_in_threadpool(
        partial(svc.voice.set_profile, principal=principal),
        agent_id,
        content,
        consent,
        file.filename,
    )


@router.get("/api/agents/{agent_id}/voice", response_model=VoiceProfileView)
def get_voice(svc: Svc, agent_id: str) -> VoiceProfileView:
    return svc.voice.get_profile(agent_id)


@router.delete("/api/agents/{agent_id}/voice", status_code=status.HTTP_204_NO_CONTENT)
def delete_voice(svc: Svc, agent_id: str, principal: AgentOwner) -> Response:
    svc.voice.delete_profile(agent_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/agents/{agent_id}/voice/sample", responses={200: {"content": {"audio/wav": {}}}})
def get_voice_sample(svc: Svc, agent_id: str) -> Response:
    """The cleaned sample the profile uses (mono, 22.05 kHz, silences trimmed)."""
    return Response(svc.voice.sample_wav(agent_id), media_type="audio/wav")


@router.post("/api/voice/check", response_model=SampleReport)
async def check_voice_sample(svc: Svc, file: Annotated[UploadFile, File()]) -> SampleReport:
    """The quality check alone (duration, rate, clipping, share of speech); nothing stored."""
    content = await read_upload(file, svc.settings.voice.max_upload_bytes)
    return await run_in_threadpool(svc.voice.check_sample, content)


@router.get("/api/voice")
def voice_status(svc: Svc) -> dict[str, object]:
    """Configured engines and round-trip guard counts (sentences checked / redone)."""
    return svc.voice.status()
