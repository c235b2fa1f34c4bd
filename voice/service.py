"""Voice: what the API and the studio call to give agents a voice and to hear users.

- **Profiles**: ``set_profile(agent_id, sample, consent)`` checks and cleans a creator's sample,
  stores it with its speaker embedding, the upload's sha256 and the consent statement, and
  reports how close the agent's synthetic voice now is to it (speaker-embedding cosine, before
  and after voice matching). A refused sample changes nothing: the files are written to a new
  folder and the row is switched to it in one transaction; the old folder goes only after the
  commit.
- **Speech**: ``speak(agent_id, text)`` synthesises with the configured engine: Coqui XTTS
  clones from the whole sample; Piper/espeak speak their own voice, moved toward the sample
  by ``voice.match``. With the round-trip guard on, every sentence is heard back by STT.
- **Hearing**: ``transcribe(bytes)`` and ``listener()`` (streaming, VAD endpointing).
- **Voice turns**: ``reply(conversation_id, text)`` streams the agent's reply as text and, as
  each sentence completes, as audio.

Every method that changes an agent's voice takes the agent id and the caller (``principal``)
and asks the owner check first, so the API and the studio cannot differ in who may do it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from agents.chat import ChatService
from agents.records import AgentRecord, utcnow
from agents.service import AgentService
from core.db import Database, UTCDateTime
from core.errors import AudioError, NotFoundError, UploadTooLargeError, ValidationError
from core.files import atomic_write, check_id
from core.principal import OwnerCheck, Principal
from core.settings import Settings
from voice import match
from voice.audio import Audio, concat, decode_mono, encode_wav, silence
from voice.base import CloneReference, Transcript, TTSEngine
from voice.factory import round_trip_guard_on
from voice.guard import RoundTripGuard
from voice.loop import Listener, VoiceEvent, speak_reply
from voice.pool import VoicePool
from voice.profiles import PreparedSample, SampleReport, check_bytes, prepare
from voice.records import VoiceProfileRecord
from voice.sentences import SentenceCutter, speakable
from voice.speaker import cosine

log = logging.getLogger(__name__)

VOICE_DIR = "voice"
SAMPLE_FILE = "sample.wav"
MAX_CONSENT_CHARS = 2000
MAX_SPEECH_CHARS = 4096  # OpenAI's limit for /v1/audio/speech input
# Fixed texts in the engine's own voice: parameters are chosen on the first, the similarity
# shown to the creator is measured on the second.
CALIBRATION_TEXT = (
    "The old lighthouse keeper climbed the stairs every evening to light the lamp, "
    "and watched the ships pass by."
)
HELD_OUT_TEXT = (
    "Would you like to hear a story about the sea? It begins on a stormy night, long ago."
)
PAUSE_BETWEEN_SENTENCES_S = 0.12


class VoiceProfileView(BaseModel):
    """An agent's voice profile as the API and the studio show it."""

    agent_id: str
    duration_s: float
    speech_s: float
    speech_share: float
    sample_rate: int
    channels: int
    clips: int
    sample_sha256: str
    consent: str
    consent_at: UTCDateTime
    created_at: UTCDateTime
    engine: str
    method: str
    similarity_before: float | None
    similarity_after: float | None
    note: str


@dataclass
class _Voice:
    """A loaded profile: what synthesis needs, cached per agent until the profile changes."""

    folder: Path
    sample_key: str
    embedding: np.ndarray
    reference: CloneReference
    match_params: dict[str, match.MatchParams] = field(default_factory=dict)


class VoiceService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        agents: AgentService,
        chat: ChatService,
        pool: VoicePool,
        owner_check: OwnerCheck,
    ) -> None:
        self.settings = settings
        self.owner_check = owner_check
        self.db = db
        self.agents = agents
        self.chat = chat
        self.pool = pool
        self._voices: dict[str, _Voice] = {}
        self._lock = threading.Lock()
        self._guard: RoundTripGuard | None = None

    # ----- status ------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        """Which engines run and how often the round-trip guard had to redo a sentence."""
        guard = self._guard.stats.as_dict() if self._guard else None
        return {
            "tts_engine": self.settings.voice.tts_engine,
            "tts_fallback": self.pool.tts_fallback_reason,
            "stt_model": self.settings.voice.stt_model,
            "voice_match": self.settings.voice.tts_voice_match,
            "round_trip_guard": round_trip_guard_on(self.settings),
            "round_trip_stats": guard,
        }

    # ----- profiles ----------------------------------------------------------------------
    def check_sample(self, data: bytes) -> SampleReport:
        """The live quality check (nothing stored)."""
        self._check_size(data)
        return check_bytes(data)

    def set_profile(
        self,
        agent_id: str,
        data: bytes,
        consent: str,
        filename: str | None = None,
        *,
        principal: Principal,
    ) -> VoiceProfileView:
        """Make ``data`` the agent's voice; the previous profile stays if anything fails."""
        self.owner_check.require_owner(principal, agent_id)  # 404/401/403 before audio work
        consent = (consent or "").strip()
        if not consent:
            raise ValidationError(
                "consent is required: state that this is your voice or that the speaker "
                "agreed to its use for this agent"
            )
        if len(consent) > MAX_CONSENT_CHARS:
            raise ValidationError(f"consent is longer than {MAX_CONSENT_CHARS} characters")
        self._check_size(data)
        prepared = prepare(data)
        digest = hashlib.sha256(data).hexdigest()
        folder_name = uuid.uuid4().hex
        folder = self._voice_root(agent_id) / folder_name
        try:
            atomic_write(folder / SAMPLE_FILE, encode_wav(prepared.audio))
            clip_paths = []
            for i, clip in enumerate(prepared.clips):
                path = folder / "clips" / f"clip-{i:02d}.wav"
                atomic_write(path, encode_wav(clip))
                clip_paths.append(path)
            embedding = self.pool.speaker_encoder().embed(prepared.audio)
            voice = _Voice(
                folder=folder,
                sample_key=digest,
                embedding=embedding,
                reference=CloneReference(
                    key=digest,
                    clips=clip_paths,
                    duration_s=prepared.audio.duration,
                    cache_dir=folder,
                ),
            )
            engine = self.pool.tts()
            similarity = {engine.name: self._similarity(engine, voice, prepared.audio)}
            old_folder = self._commit_profile(
                agent_id, folder_name, digest, filename, prepared, embedding, similarity, consent
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if old_folder and old_folder != folder_name:
            shutil.rmtree(self._voice_root(agent_id) / old_folder, ignore_errors=True)
        with self._lock:
            self._voices[agent_id] = voice
        return self.get_profile(agent_id)

    def _commit_profile(
        self,
        agent_id: str,
        folder_name: str,
        digest: str,
        filename: str | None,
        prepared: PreparedSample,
        embedding: np.ndarray,
        similarity: dict[str, object],
        consent: str,
    ) -> str | None:
        """Point the agent's profile row at the new folder; returns the folder it replaces."""
        report = prepared.report
        with self.db.session() as s:
            if s.get(AgentRecord, agent_id) is None:  # deleted while the audio was processed
                raise NotFoundError(f"no agent with id {agent_id!r}")
            row = s.get(VoiceProfileRecord, agent_id)
            old = row.folder if row is not None else None
            if row is None:
                row = VoiceProfileRecord(agent_id=agent_id)
                s.add(row)
            row.folder = folder_name
            row.sample_sha256 = digest
            row.original_name = (filename or "")[:255] or None
            row.original_rate = report.sample_rate
            row.original_channels = report.channels
            row.duration_s = round(prepared.audio.duration, 2)
            row.speech_s = report.speech_s
            row.speech_share = report.speech_share
            row.clips = len(prepared.clips)
            row.embedding = [round(float(v), 6) for v in embedding]
            row.similarity = similarity
            row.consent = consent
            row.consent_at = utcnow()
            row.created_at = utcnow()
        return old

    def _similarity(self, engine: TTSEngine, voice: _Voice, sample: Audio) -> dict[str, object]:
        """Similarity of the engine's voice to the sample, before and after (held-out text)."""
        encoder = self.pool.speaker_encoder()
        if engine.supports_cloning:
            cloned = engine.synthesize(HELD_OUT_TEXT, reference=voice.reference)
            after = cosine(encoder.embed(cloned), voice.embedding)
            return {"before": None, "after": round(after, 4), "method": "cloning"}
        calibration = engine.synthesize(CALIBRATION_TEXT)
        held_out = engine.synthesize(HELD_OUT_TEXT)
        if not self.settings.voice.tts_voice_match:
            before = cosine(encoder.embed(held_out), voice.embedding)
            return {"before": round(before, 4), "after": None, "method": "none"}
        result = match.fit(engine.name, calibration, held_out, sample, voice.embedding, encoder)
        self._save_match(voice, result.params)
        return {
            "before": round(result.similarity_before, 4),
            "after": round(result.similarity_after, 4),
            "method": "voice match",
            "alpha": result.params.alpha,
        }

    def get_profile(self, agent_id: str) -> VoiceProfileView:
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            row = s.get(VoiceProfileRecord, agent_id)
            if row is None:
                raise NotFoundError("this agent has no voice profile yet")
            return self._view(row)

    def has_profile(self, agent_id: str) -> bool:
        with self.db.session() as s:
            return s.get(VoiceProfileRecord, agent_id) is not None

    def delete_profile(self, agent_id: str, *, principal: Principal) -> None:
        self.owner_check.require_owner(principal, agent_id)
        with self.db.session() as s:
            row = s.get(VoiceProfileRecord, agent_id)
            if row is None:
                raise NotFoundError("this agent has no voice profile")
            folder = row.folder
            s.delete(row)
        shutil.rmtree(self._voice_root(agent_id) / folder, ignore_errors=True)
        with self._lock:
            self._voices.pop(agent_id, None)

    def sample_wav(self, agent_id: str) -> bytes:
        voice = self._voice(agent_id)
        if voice is None:
            raise NotFoundError("this agent has no voice profile yet")
        return (voice.folder / SAMPLE_FILE).read_bytes()

    def _view(self, row: VoiceProfileRecord) -> VoiceProfileView:
        engine = self.settings.voice.tts_engine
        sims = row.similarity or {}
        name, figures = next(iter(sims.items()), (engine, {}))
        method = str(figures.get("method", "none"))
        before, after = figures.get("before"), figures.get("after")
        if method == "cloning":
            note = (
                f"{name} clones from the whole sample; similarity of its speech to the sample "
                f"(speaker-embedding cosine): {after:.2f}"
            )
        elif method == "voice match":
            note = (
                f"{name} cannot clone voices: its own voice is shifted toward the sample "
                f"(pitch and timbre). Similarity to the sample (speaker-embedding cosine, "
                f"1 = same speaker): {before:.2f} before, {after:.2f} after. This is a "
                "similarity figure, not a clone."
            )
        else:
            note = f"{name} speaks its own voice (voice match is off)."
        return VoiceProfileView(
            agent_id=row.agent_id,
            duration_s=row.duration_s,
            speech_s=row.speech_s,
            speech_share=row.speech_share,
            sample_rate=row.original_rate,
            channels=row.original_channels,
            clips=row.clips,
            sample_sha256=row.sample_sha256,
            consent=row.consent,
            consent_at=row.consent_at,
            created_at=row.created_at,
            engine=name,
            method=method,
            similarity_before=before if isinstance(before, int | float) else None,
            similarity_after=after if isinstance(after, int | float) else None,
            note=note,
        )

    def _voice_root(self, agent_id: str) -> Path:
        return self.settings.agents_dir / check_id(agent_id, "agent id") / VOICE_DIR

    def _voice(self, agent_id: str) -> _Voice | None:
        """The agent's loaded profile, re-read when it changed (or another process set it)."""
        with self.db.session() as s:
            row = s.get(VoiceProfileRecord, agent_id) if check_id(agent_id) else None
            if row is None:
                with self._lock:
                    self._voices.pop(agent_id, None)
                return None
            folder, key, embedding = row.folder, row.sample_sha256, row.embedding
            duration = row.duration_s
        with self._lock:
            cached = self._voices.get(agent_id)
            if cached is not None and cached.folder.name == folder:
                return cached
        path = self._voice_root(agent_id) / folder
        clips = sorted((path / "clips").glob("clip-*.wav"))
        voice = _Voice(
            folder=path,
            sample_key=key,
            embedding=np.asarray(embedding, dtype=np.float32),
            reference=CloneReference(key=key, clips=clips, duration_s=duration, cache_dir=path),
        )
        with self._lock:
            self._voices[agent_id] = voice
        return voice

    def _match_file(self, voice: _Voice, engine: str) -> Path:
        return voice.folder / f"match-{re.sub(r'[^A-Za-z0-9_.-]', '_', engine)}.json"

    def _save_match(self, voice: _Voice, params: match.MatchParams) -> None:
        voice.match_params[params.engine] = params
        atomic_write(self._match_file(voice, params.engine), params.to_json().encode())

    def _match_params(self, voice: _Voice, engine: TTSEngine) -> match.MatchParams:
        """This engine's voice-match parameters; fitted on first use for a new engine."""
        params = voice.match_params.get(engine.name)
        if params is not None:
            return params
        path = self._match_file(voice, engine.name)
        if path.is_file():
            params = match.MatchParams.from_json(path.read_text())
            voice.match_params[engine.name] = params
            return params
        sample = decode_mono((voice.folder / SAMPLE_FILE).read_bytes())
        result = match.fit(
            engine.name,
            engine.synthesize(CALIBRATION_TEXT),
            engine.synthesize(HELD_OUT_TEXT),
            sample,
            voice.embedding,
            self.pool.speaker_encoder(),
        )
        with contextlib.suppress(OSError):  # profile replaced meanwhile: use the fit this once
            self._save_match(voice, result.params)
        return result.params

    def _check_size(self, data: bytes) -> None:
        limit = self.settings.voice.max_upload_bytes
        if len(data) > limit:
            raise UploadTooLargeError(
                f"file is {len(data) / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB "
                "(ANIMA_VOICE_MAX_UPLOAD_MB)"
            )

    # ----- speech ------------------------------------------------------------------------
    def guard(self) -> RoundTripGuard | None:
        if not round_trip_guard_on(self.settings):
            return None
        with self._lock:
            if self._guard is None:
                self._guard = RoundTripGuard(
                    self.pool.stt(),
                    max_wer=self.settings.voice.tts_round_trip_max_wer,
                    retries=self.settings.voice.tts_round_trip_retries,
                    language=self.settings.voice.tts_language,
                )
            return self._guard

    def speak_piece(self, agent_id: str | None, text: str, speed: float = 1.0) -> Audio:
        """One sentence in the agent's voice (``agent_id=None``: the engine's own voice)."""
        engine = self.pool.tts()
        voice = self._voice(agent_id) if agent_id else None

        def attempt(pace: float) -> Audio:
            if voice is not None and engine.supports_cloning:
                return engine.synthesize(text, reference=voice.reference, speed=speed * pace)
            audio = engine.synthesize(text, speed=speed * pace)
            if voice is not None and self.settings.voice.tts_voice_match:
                audio = match.apply(audio, self._match_params(voice, engine))
            return audio

        guard = self.guard()
        if guard is None:
            return attempt(1.0)
        return guard.run(text, attempt)[0]

    def speak(self, agent_id: str | None, text: str, speed: float = 1.0) -> Audio:
        """All of ``text``, sentence by sentence, in one piece of audio."""
        return concat(list(self.speak_stream(agent_id, text, speed)), self.pool.tts().sample_rate)

    def speak_stream(self, agent_id: str | None, text: str, speed: float = 1.0) -> Iterator[Audio]:
        """``text`` sentence by sentence, each yielded as soon as it is synthesised."""
        if agent_id:
            self.agents.get_agent(agent_id)
        if not isinstance(text, str) or not speakable(text):
            raise ValidationError("input is empty: give the text to speak")
        if len(text) > MAX_SPEECH_CHARS:
            raise ValidationError(f"input is longer than {MAX_SPEECH_CHARS} characters")
        if not 0.25 <= speed <= 4.0:
            raise ValidationError("speed must be between 0.25 and 4.0")
        cutter = SentenceCutter(first_min_words=10_000)  # whole sentences: no latency race here
        pieces = [*cutter.feed(text + " "), *cutter.flush()]
        rate = self.pool.tts().sample_rate
        for i, piece in enumerate(pieces):
            audio = self.speak_piece(agent_id, piece, speed).resampled(rate)
            if i < len(pieces) - 1:
                audio = concat([audio, silence(PAUSE_BETWEEN_SENTENCES_S, rate)], rate)
            yield audio

    # ----- hearing -----------------------------------------------------------------------
    def stt_language(self, language: str | None = None) -> str | None:
        value = language or self.settings.voice.stt_language
        return None if value in (None, "", "auto") else value

    def transcribe(self, data: bytes, language: str | None = None) -> Transcript:
        self._check_size(data)
        audio = decode_mono(data)
        if audio.duration > 30 * 60:
            raise AudioError("the recording is longer than 30 minutes")
        return self.pool.stt().transcribe(audio, language=self.stt_language(language))

    def listener(self) -> Listener:
        """A streaming listener with the configured endpointing, for one user turn."""
        return Listener(
            self.pool.stt(),
            language=self.stt_language(),
            endpoint_ms=self.settings.voice.endpoint_ms,
            aggressiveness=self.settings.voice.vad_aggressiveness,
        )

    # ----- voice turns -------------------------------------------------------------------
    def reply(
        self, conversation_id: str, text: str, *, principal: Principal
    ) -> Iterator[VoiceEvent]:
        """The agent's reply to ``text`` (what the user said): text deltas and, as each
        sentence completes, its audio; a final ``done`` event carries the stored message."""
        conversation = self.chat.get_conversation(conversation_id, principal=principal)
        agent_id = conversation.agent_id
        voiced = self.has_profile(agent_id)
        reply = self.chat.send(conversation_id, text, principal=principal)
        yield VoiceEvent("transcript", text=text)
        yield from speak_reply(
            reply, lambda piece: self.speak_piece(agent_id if voiced else None, piece)
        )
        message = reply.message
        yield VoiceEvent(
            "done", text=reply.text, data={"message_id": message.id if message else None}
        )

    def turn(
        self, conversation_id: str, audio: Audio, *, principal: Principal
    ) -> Iterator[VoiceEvent]:
        """A whole recorded user turn: transcribe, then ``reply``."""
        heard = self.pool.stt().transcribe(audio, language=self.stt_language())
        if not heard.text.strip():
            raise AudioError("no words were heard in the recording")
        yield from self.reply(conversation_id, heard.text, principal=principal)
