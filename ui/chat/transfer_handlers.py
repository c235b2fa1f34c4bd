"""Chat file handlers: download the open chat (SillyTavern JSONL or Anima JSON), and import
a SillyTavern chat onto the picked agent (with the picked group members, as a group chat)."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from container import Services
from core.errors import AnimaError, UploadTooLargeError, ValidationError
from core.principal import Principal
from ui.agents.form import export_path
from ui.chat.handlers import chat_messages, conversation_choices
from ui.common import show_error
from ui.wiring import Updates


def export_chat(
    services: Services, conv_id: str | None, fmt: str, *, principal: Principal
) -> Updates:
    """Write the open chat to a fresh file and offer it for download."""
    try:
        if not conv_id:
            raise ValidationError("open a conversation first")
        transfer = services.chat_transfer
        if fmt == "json":
            text = json.dumps(transfer.export_json(conv_id, principal=principal), indent=1)
        else:
            text = transfer.export_jsonl(conv_id, principal=principal)
    except AnimaError as exc:
        return {"export_file": gr.update(value=None), "status": show_error(exc)}
    path = export_path(f"chat-{conv_id[:8]}.{fmt}")
    path.write_text(text, encoding="utf-8")
    return {
        "export_file": gr.update(value=str(path), visible=True),
        "status": f"Exported **{path.name}**.",
    }


def import_chat(
    services: Services,
    agent_id: str | None,
    members: list[str] | None,
    upload: str | None,
    *,
    principal: Principal,
) -> Updates:
    """Import the uploaded SillyTavern chat and open it."""
    try:
        if not agent_id:
            raise ValidationError("pick the agent the chat is with first")
        if not upload:
            raise ValidationError("choose a .jsonl chat file")
        path = Path(upload)
        limit = services.settings.server.max_upload_bytes
        if path.stat().st_size > limit:
            raise UploadTooLargeError(f"file is larger than the {limit / 1e6:.1f} MB limit")
        others = [m for m in members or [] if m and m != agent_id]
        conv = services.chat_transfer.import_jsonl(
            agent_id, path.name, path.read_bytes(), others, principal=principal
        )
        choices = conversation_choices(services, agent_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {
        "conversation": gr.update(choices=choices, value=conv.id),
        "chatbot": chat_messages(conv),
        "status": f"Imported **{path.name}**: {len(conv.messages)} messages.",
    }
