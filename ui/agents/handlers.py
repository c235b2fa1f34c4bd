"""The agent editor's handlers: plain values in, named updates out (no components here).

Each function takes the services, the values the browser sent and, where it acts for a user,
the ``Principal`` behind the request; it returns a dict keyed by the names ``layout.py`` maps
to components (``ui.wiring``). Names left out stay as they are, so a refused save leaves the
form exactly as the user typed it. Tests call these directly, without a browser.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from agents.service import AgentView
from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from ui.agents.form import (
    FORM_KEYS,
    changed_fields,
    create_payload,
    export_path,
    form_values,
    update_patch,
)
from ui.common import agent_choices, show_error
from ui.wiring import Updates

# Everything ``show`` fills: the form, the avatar and the status line.
DETAIL = (*FORM_KEYS, "avatar", "avatar_changed", "status")
HIDE = gr.update(visible=False)
NEW_MESSAGE = "New agent: fill in the form and Save."
# What the browser sends instead of an agent id when the user chose to keep their unsaved
# edits (the confirm before switching agents, ``guard.py``): the switch is undone.
STAY = "__stay__"


def show(services: Services, agent: AgentView | None, message: str) -> Updates:
    """The editor showing ``agent`` (None: an empty form for a new agent)."""
    image = None
    if agent is not None and agent.has_avatar:
        blob = services.agents.avatar(agent.id)
        image = Image.open(io.BytesIO(blob)) if blob else None
    return {**form_values(agent), "avatar": image, "avatar_changed": False, "status": message}


def load(
    services: Services, agent_id: str | None, shown_id: str | None = None, intent: str = ""
) -> Updates:
    """The user picked an agent: fill the form, close a pending delete question.

    ``intent == STAY`` (the user kept their unsaved edits) puts the picker back on
    ``shown_id``, the agent the form still shows, and leaves every field as typed.
    """
    if intent == STAY:
        return {"picker": gr.update(value=shown_id)}
    if not agent_id:
        return {**show(services, None, ""), "confirm_row": HIDE}
    try:
        return {**show(services, services.agents.get_agent(agent_id), ""), "confirm_row": HIDE}
    except AnimaError as exc:
        return {"status": show_error(exc), "confirm_row": HIDE}


def new(services: Services, intent: str = "") -> Updates:
    """An empty form, unless the user chose to keep their unsaved edits (``STAY``)."""
    if intent == STAY:
        return {}
    return {"picker": gr.update(value=None), **show(services, None, NEW_MESSAGE)}


def save(
    services: Services,
    agent_id: str | None,
    avatar_path: str | None,
    avatar_changed: bool,
    values: dict[str, Any],
    *,
    principal: Principal,
) -> Updates:
    """Create the agent (no ``agent_id``) or apply what the user changed to it."""
    image = Path(avatar_path).read_bytes() if avatar_changed and avatar_path else None
    try:
        if agent_id:
            agent, message = _update(services, agent_id, image, values, principal=principal)
            if agent is None:
                return {"status": message}
        else:
            agent = services.agents.create_agent(
                create_payload(values), avatar=image, owner=principal.address, principal=principal
            )
            message = f"Created **{agent.name}**."
    except AnimaError as exc:
        return {"status": show_error(exc)}
    picker = gr.update(choices=agent_choices(services, principal), value=agent.id)
    return {"picker": picker, **show(services, agent, message)}


def _update(
    services: Services,
    agent_id: str,
    image: bytes | None,
    values: dict[str, Any],
    *,
    principal: Principal,
) -> tuple[AgentView | None, str]:
    """Apply the changed fields and the new avatar; the agent (None: nothing changed) and
    the status line naming what changed."""
    agent = services.agents.get_agent(agent_id)
    patch = update_patch(agent, values)
    if not patch and image is None:
        return None, f"Nothing to save: **{agent.name}** has no changes."
    changed = changed_fields(agent, patch) + (["avatar"] if image is not None else [])
    if patch:
        agent = services.agents.update_agent(agent_id, patch, principal=principal)
    if image is not None:
        agent = services.agents.set_avatar(agent_id, image, principal=principal)
    return agent, f"Saved **{agent.name}**: {', '.join(changed)}."


def ask_delete(services: Services, agent_id: str | None) -> Updates:
    if not agent_id:
        return {"confirm_row": HIDE, "status": "Nothing to delete: no agent is selected."}
    return {
        "confirm_row": gr.update(visible=True),
        "status": "Delete this agent and all its chats? Confirm below.",
    }


def cancel_delete(services: Services) -> Updates:
    return {"confirm_row": HIDE, "status": ""}


def delete(services: Services, agent_id: str | None, *, principal: Principal) -> Updates:
    if not agent_id:
        return {"status": "", "confirm_row": HIDE}
    try:
        name = services.agents.get_agent(agent_id).name
        services.agents.delete_agent(agent_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc), "confirm_row": HIDE}
    picker = gr.update(choices=agent_choices(services, principal), value=None)
    return {"picker": picker, **show(services, None, f"Deleted **{name}**."), "confirm_row": HIDE}


def export(services: Services, fmt: str, agent_id: str | None, card_spec: str) -> Updates:
    """Write the card in ``fmt`` to a fresh file and offer it for download."""
    if not agent_id:
        return {
            "export_file": None,
            "status": show_error(ValidationError("save the agent before exporting it")),
        }
    try:
        card = services.agents.export_card(agent_id, fmt, card_spec)  # type: ignore[arg-type]
    except AnimaError as exc:
        return {"export_file": None, "status": show_error(exc)}
    path = export_path(card.filename)
    path.write_bytes(card.content)
    return {"export_file": str(path), "status": f"Exported **{card.filename}**."}
