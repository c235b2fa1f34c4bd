"""The voice panel's handlers: check a sample, make it the agent's voice, remove it, try it.

The checks, storage and synthesis are ``services.voice``'s; these only translate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from container import Services
from core.errors import AnimaError, NotFoundError, ValidationError
from core.principal import Principal
from ui.common import show_error
from ui.wiring import Updates
from voice.audio import decode_mono, encode_wav
from voice.service import VoiceProfileView

CONSENT_STATEMENT = (
    "I am the speaker in this recording, or the speaker agreed to its use as this agent's voice."
)
TRY_TEXT = "Hello! This is how I sound. Shall we begin our adventure?"


def profile_text(profile: VoiceProfileView | None) -> str:
    if profile is None:
        return "No voice yet: the agent speaks with the default voice."
    before = profile.similarity_before
    after = profile.similarity_after
    figures = ""
    if after is not None:
        figures = f"**similarity {after:.2f}**"
        if before is not None:
            figures = f"similarity to the sample **{before:.2f} → {after:.2f}**"
    return (
        f"**Voice set** from {profile.duration_s:.0f} s of speech "
        f"(sha256 `{profile.sample_sha256[:12]}…`). {figures}\n\n{profile.note}"
    )


def quality_text(path: str | None, services: Services) -> str:
    if not path:
        return ""
    try:
        report = services.voice.check_sample(Path(path).read_bytes())
    except AnimaError as exc:
        return f"⚠️ {exc.message}"
    if report.problems:
        return "⚠️ " + "; ".join(report.problems)
    return f"✅ {report.summary()}"


def current_sample(services: Services, agent_id: str) -> Any:
    """The stored (cleaned) sample as ``(rate, samples)`` for the player, if there is one."""
    try:
        return (22050, decode_mono(services.voice.sample_wav(agent_id)).samples)
    except NotFoundError:
        return None


def check(services: Services, path: str | None) -> Updates:
    return {"quality": quality_text(path, services)}


def load(services: Services, agent_id: str | None) -> Updates:
    empty = {"status": profile_text(None), "current": None, "quality": ""}
    if not agent_id:
        return empty
    try:
        profile = services.voice.get_profile(agent_id)
    except NotFoundError:
        return empty
    except AnimaError as exc:
        return {**empty, "status": show_error(exc)}
    return {
        "status": profile_text(profile),
        "current": current_sample(services, agent_id),
        "quality": "",
    }


def use(
    services: Services,
    agent_id: str | None,
    path: str | None,
    agreed: bool,
    *,
    principal: Principal,
    progress: Callable[..., Any] = lambda *a, **k: None,
) -> Updates:
    """Make the sample the agent's voice (after the consent statement is confirmed)."""
    try:
        if not agent_id:
            raise ValidationError("save the agent first, then give it a voice")
        if not path:
            raise ValidationError("record or upload a sample first")
        if not agreed:
            raise ValidationError("confirm the consent statement first")
        progress(0.1, desc="checking the sample and matching the voice (10-60 s)")
        profile = services.voice.set_profile(
            agent_id,
            Path(path).read_bytes(),
            CONSENT_STATEMENT,
            Path(path).name,
            principal=principal,
        )
    except AnimaError as exc:
        return {"quality": show_error(exc)}
    return {
        "status": profile_text(profile),
        "current": current_sample(services, agent_id),
        "quality": "✅ voice saved",
    }


def drop(services: Services, agent_id: str | None, *, principal: Principal) -> Updates:
    try:
        if not agent_id:
            raise ValidationError("pick an agent first")
        services.voice.delete_profile(agent_id, principal=principal)
    except AnimaError as exc:
        return {"quality": show_error(exc)}
    return {"status": profile_text(None), "current": None, "quality": "Voice removed."}


def speak(services: Services, agent_id: str | None, text: str) -> Updates:
    try:
        audio = services.voice.speak(agent_id or None, text)
    except AnimaError as exc:
        show_error(exc)
        return {"heard": None}
    return {"heard": encode_wav(audio)}
