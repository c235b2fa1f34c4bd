"""The chat's side panel: who the user is (persona), the author's note, and the chat's memory
(running summary, pinned messages), plus a look at the prompt they make.

Handlers take plain values and return named updates (``ui.wiring``); every one passes the
caller on to the persona and memory services, which decide what it may see and change.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from agents.memory import ChatSettings
from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from ui.common import keep_choice, show_error
from ui.wiring import Updates

NEW_PERSONA = ""  # the persona picker's "make a new one" value
NO_PERSONA = "-"  # the conversation picker value meaning "my own user name"
CHOICE_CHARS = 60


def persona_choices(services: Services, principal: Principal) -> list[tuple[str, str]]:
    personas = services.personas.list(principal=principal)
    mine = [(f"{p.name}{' (default)' if p.is_default else ''}", p.id) for p in personas]
    return [("No persona (use my name)", NO_PERSONA), *mine]


def _message_label(position: int, role: str, content: str) -> str:
    text = " ".join(content.split())
    short = text if len(text) <= CHOICE_CHARS else text[: CHOICE_CHARS - 1] + "…"
    return f"#{position} {role}: {short}"


def _pins_updates(services: Services, conv_id: str, principal: Principal) -> Updates:
    conv = services.chat.get_conversation(conv_id, principal=principal)
    pins = [m for m in conv.messages if m.pinned]
    loose = [m for m in conv.messages if not m.pinned]
    return {
        "pin_choice": gr.update(
            choices=[(_message_label(m.position, m.role, m.content), m.id) for m in loose],
            value=None,
        ),
        "pinned": gr.update(
            choices=[(_message_label(m.position, m.role, m.content), m.id) for m in pins],
            value=None,
        ),
    }


def load_panel(
    services: Services, conv_id: str | None, picked: str | None, *, principal: Principal
) -> Updates:
    """Show the open conversation's settings. A chat the user has not written in yet takes
    the persona picked in the panel (so "New chat" speaks as the one chosen)."""
    choices = persona_choices(services, principal)
    if not conv_id:
        default = services.personas.default(principal=principal)
        value = keep_choice(picked, choices) or (default.id if default else NO_PERSONA)
        return {"persona": gr.update(choices=choices, value=value), "panel_status": ""}
    try:
        conv = services.chat.get_conversation(conv_id, principal=principal)
        fresh = not any(m.role == "user" for m in conv.messages)
        if fresh and not conv.persona_id and picked and picked != NO_PERSONA:
            conv = services.memory.update_settings(
                conv_id, ChatSettings(persona_id=picked), principal=principal
            )
        pins = _pins_updates(services, conv_id, principal)
    except AnimaError as exc:
        return {"panel_status": show_error(exc)}
    return {
        "persona": gr.update(choices=choices, value=conv.persona_id or NO_PERSONA),
        "note": conv.authors_note,
        "note_depth": conv.authors_note_depth,
        "note_frequency": conv.authors_note_frequency,
        "summary": conv.summary,
        "summary_pinned": conv.summary_pinned,
        **pins,
        "panel_status": "",
    }


def pick_persona(
    services: Services, conv_id: str | None, persona_id: str | None, *, principal: Principal
) -> Updates:
    """Speak as the picked persona in the open chat, and fill the editor with it."""
    editor = _editor(services, persona_id, principal)
    if not conv_id:
        return {**editor, "panel_status": "The next new chat uses this persona."}
    try:
        chosen = None if persona_id in (None, NO_PERSONA) else persona_id
        services.memory.update_settings(
            conv_id, ChatSettings(persona_id=chosen), principal=principal
        )
    except AnimaError as exc:
        return {"panel_status": show_error(exc)}
    return {**editor, "panel_status": "✅ This chat now uses the picked persona."}


def _editor(services: Services, persona_id: str | None, principal: Principal) -> Updates:
    if not persona_id or persona_id == NO_PERSONA:
        return {"persona_name": "", "persona_description": "", "persona_default": False}
    try:
        p = services.personas.get(persona_id, principal=principal)
    except AnimaError:
        return {"persona_name": "", "persona_description": "", "persona_default": False}
    return {
        "persona_name": p.name,
        "persona_description": p.description,
        "persona_default": p.is_default,
    }


def save_persona(
    services: Services,
    conv_id: str | None,
    persona_id: str | None,
    name: str,
    description: str,
    avatar: str | None,
    make_default: bool,
    as_new: bool,
    *,
    principal: Principal,
) -> Updates:
    """Create a persona (``as_new`` or none picked) or update the picked one; the chat open
    then uses it."""
    personas = services.personas
    try:
        if as_new or not persona_id or persona_id == NO_PERSONA:
            saved = personas.create(
                name, description, make_default=make_default, principal=principal
            )
        else:
            changes = {"name": name, "description": description}
            saved = personas.update(persona_id, changes, principal=principal)
            if make_default:
                saved = personas.set_default(saved.id, principal=principal)
        if avatar:
            with open(avatar, "rb") as image:
                personas.set_avatar(saved.id, image.read(), principal=principal)
        if conv_id:
            services.memory.update_settings(
                conv_id, ChatSettings(persona_id=saved.id), principal=principal
            )
        choices = persona_choices(services, principal)
    except AnimaError as exc:
        return {"panel_status": show_error(exc)}
    return {
        "persona": gr.update(choices=choices, value=saved.id),
        "persona_avatar": None,
        "persona_default": saved.is_default,
        "panel_status": f"✅ Saved persona {saved.name}.",
    }


def delete_persona(services: Services, persona_id: str | None, *, principal: Principal) -> Updates:
    try:
        if not persona_id or persona_id == NO_PERSONA:
            raise ValidationError("pick a persona to delete")
        services.personas.delete(persona_id, principal=principal)
        choices = persona_choices(services, principal)
    except AnimaError as exc:
        return {"panel_status": show_error(exc)}
    return {
        "persona": gr.update(choices=choices, value=NO_PERSONA),
        **_editor(services, None, principal),
        "panel_status": "Persona deleted.",
    }


def _save(services: Services, conv_id: str | None, principal: Principal, **fields: Any) -> str:
    try:
        if not conv_id:
            raise ValidationError("open or start a conversation first")
        services.memory.update_settings(conv_id, ChatSettings(**fields), principal=principal)
    except AnimaError as exc:
        return show_error(exc)
    except ValueError as exc:  # pydantic: a field out of its bounds
        return show_error(str(exc).splitlines()[-1] if str(exc) else "invalid value")
    return "✅ Saved."


def save_note(
    services: Services,
    conv_id: str | None,
    text: str,
    depth: float | None,
    frequency: float | None,
    *,
    principal: Principal,
) -> Updates:
    status = _save(
        services,
        conv_id,
        principal,
        authors_note=text or "",
        authors_note_depth=int(depth if depth is not None else 4),
        authors_note_frequency=int(frequency if frequency is not None else 1),
    )
    return {"panel_status": status}


def save_summary(
    services: Services, conv_id: str | None, summary: str, pinned: bool, *, principal: Principal
) -> Updates:
    status = _save(services, conv_id, principal, summary=summary or "", summary_pinned=bool(pinned))
    return {"panel_status": status}


def pin(
    services: Services,
    conv_id: str | None,
    message_id: str | None,
    pinned: bool,
    *,
    principal: Principal,
) -> Updates:
    try:
        if not conv_id or not message_id:
            raise ValidationError("pick a message first")
        services.memory.pin(conv_id, message_id, pinned, principal=principal)
        updates = _pins_updates(services, conv_id, principal)
    except AnimaError as exc:
        return {"panel_status": show_error(exc)}
    return {**updates, "panel_status": "📌 Pinned." if pinned else "Unpinned."}


def refresh_pins(services: Services, conv_id: str | None, *, principal: Principal) -> Updates:
    if not conv_id:
        return {}
    try:
        return _pins_updates(services, conv_id, principal)
    except AnimaError as exc:
        return {"panel_status": show_error(exc)}


def preview_prompt(services: Services, conv_id: str | None, *, principal: Principal) -> Updates:
    """The prompt the agent would read if it replied now, one block per message."""
    try:
        if not conv_id:
            raise ValidationError("open or start a conversation first")
        build = services.memory.preview(conv_id, principal=principal)
    except AnimaError as exc:
        return {"panel_status": show_error(exc)}
    blocks = [f"[{m.role}]\n{m.content}" for m in build.messages]
    head = f"{build.prompt_tokens} tokens; {build.dropped_history} older messages left out\n\n"
    return {"prompt": head + "\n\n".join(blocks), "panel_status": ""}
