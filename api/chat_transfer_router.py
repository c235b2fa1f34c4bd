"""Chat files: export a conversation (SillyTavern JSONL, or Anima's JSON with every version)
and import a SillyTavern chat onto an agent."""

from __future__ import annotations

import json
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile, status

from agents.conversations import ConversationView
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_responses
from api.uploads import process_upload
from container import Services

router = APIRouter(
    prefix="/api", tags=["conversations"], responses=error_responses(*GUARD_ERRORS, 404)
)
Svc = Annotated[Services, Depends(services)]


@router.get(
    "/conversations/{conversation_id}/export",
    responses={
        200: {"content": {"application/jsonl": {}, "application/json": {}}},
    },
)
def export_conversation(
    svc: Svc,
    conversation_id: str,
    principal: Caller,
    format: Annotated[Literal["jsonl", "json"], Query()] = "jsonl",
) -> Response:
    """The conversation as a file: ``jsonl`` (SillyTavern's chat format) or ``json`` (Anima's
    own, every message with all its versions)."""
    transfer = svc.chat_transfer
    if format == "json":
        body = json.dumps(transfer.export_json(conversation_id, principal=principal), indent=1)
        media = "application/json"
    else:
        body = transfer.export_jsonl(conversation_id, principal=principal)
        media = "application/jsonl"
    name = quote(f"chat-{conversation_id}.{format}")
    return Response(
        body.encode("utf-8"),
        media_type=media,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{name}"},
    )


@router.post(
    "/agents/{agent_id}/conversations/import",
    response_model=ConversationView,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(413, 422),
)
async def import_conversation(
    svc: Svc,
    agent_id: str,
    principal: Caller,
    file: Annotated[UploadFile, File()],
    members: Annotated[
        list[str] | None,
        Form(
            description="More agents, to import a group chat as one (their names match "
            "the lines they speak); the path's agent speaks first."
        ),
    ] = None,
) -> ConversationView:
    """A SillyTavern chat (JSONL) as a new conversation with the agent. A malformed file is a
    422 that names its line, and nothing is stored."""
    return await process_upload(
        file,
        svc.settings.server.max_upload_bytes,
        lambda name, content: svc.chat_transfer.import_jsonl(
            agent_id, name, content, members or (), principal=principal
        ),
    )
