"""``/api/agents/{agent_id}/finetunes`` and ``.../adapters``: fine-tune runs and adapter versions.

Translates HTTP to ``FinetuneService`` calls. Every route keeps the agent id in its path; every
one that changes something passes the caller on (the service checks it: only the agent's owner
trains, cancels, activates, rolls back or deletes its adapters) and takes ``AgentOwner`` too, so
a refusal comes before the chats are parsed or the service is reached (defence in depth).
Uploaded chats are parsed and the run stored in a worker thread, off the event loop.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile, status
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool

from agents.finetune.data import UploadedChat
from agents.finetune.schema import (
    AdapterView,
    DataSummary,
    FinetuneSettings,
    RunMetrics,
    RunView,
)
from agents.service import AgentView
from api.deps import AgentOwner, read_upload, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from container import Services
from core.errors import ValidationError, describe_validation_error

router = APIRouter(
    prefix="/api/agents/{agent_id}",
    tags=["fine-tuning"],
    responses=error_responses(*GUARD_ERRORS, *OWNER_ERRORS, 404, 409),
)
Svc = Annotated[Services, Depends(services)]

SETTINGS_HELP = (
    "JSON object of FinetuneSettings (all optional), e.g. "
    '{"epochs": 3, "learning_rate": 0.001, "lora_r": 8, "use_greetings": true}'
)
CHATS_HELP = (
    "Chat files to train on besides the card's example dialogues and greetings: SillyTavern "
    'chat .jsonl, or JSONL of {"role", "content"} messages or of {"messages": [...]} lines. '
    "All files of one request together at most ANIMA_MAX_UPLOAD_MB."
)


def _options(raw: str | None) -> FinetuneSettings:
    if not raw or not raw.strip():
        return FinetuneSettings()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"settings: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ValidationError("settings must be a JSON object")
    try:
        return FinetuneSettings.model_validate(value)
    except PydanticValidationError as exc:
        raise ValidationError(describe_validation_error(exc, "settings")) from exc


async def _chats(files: list[UploadFile] | None, limit: int) -> list[UploadedChat]:
    return [
        UploadedChat(filename=f.filename or "chat.jsonl", content=await read_upload(f, limit))
        for f in files or []
    ]


@router.post("/finetunes", response_model=RunView, status_code=status.HTTP_202_ACCEPTED)
async def start_finetune(
    svc: Svc,
    agent_id: str,
    principal: AgentOwner,
    settings: Annotated[str | None, Form(description=SETTINGS_HELP)] = None,
    chats: Annotated[list[UploadFile] | None, File(description=CHATS_HELP)] = None,
) -> RunView:
    """Queue a fine-tune: 202 with the run and its job (follow it at `/api/jobs/{id}/events`).

    422 when the data is too little (the message says how many dialogues are needed) or a chat
    file is malformed; 409 while another run of this agent is unfinished.
    """
    options = _options(settings)
    uploads = await _chats(chats, svc.settings.server.max_upload_bytes)
    start = partial(svc.finetune.start, principal=principal)
    return await run_in_threadpool(start, agent_id, uploads, options)


@router.post("/finetunes/preview", response_model=DataSummary)
async def preview_finetune(
    svc: Svc,
    agent_id: str,
    _: AgentOwner,
    settings: Annotated[str | None, Form(description=SETTINGS_HELP)] = None,
    chats: Annotated[list[UploadFile] | None, File(description=CHATS_HELP)] = None,
) -> DataSummary:
    """What a run would train on (counts per source, train / held-out split), nothing started."""
    options = _options(settings)
    uploads = await _chats(chats, svc.settings.server.max_upload_bytes)
    return await run_in_threadpool(svc.finetune.preview, agent_id, uploads, options)


@router.get("/finetunes", response_model=list[RunView])
def list_finetunes(svc: Svc, agent_id: str) -> list[RunView]:
    """The agent's runs, newest first, each with its job."""
    return svc.finetune.list_runs(agent_id)


@router.get("/finetunes/{run_id}", response_model=RunView)
def get_finetune(svc: Svc, agent_id: str, run_id: str) -> RunView:
    return svc.finetune.get_run(agent_id, run_id)


@router.get("/finetunes/{run_id}/metrics", response_model=RunMetrics)
def finetune_metrics(svc: Svc, agent_id: str, run_id: str) -> RunMetrics:
    """Loss per step (live while training), training stats, and the before/after evaluation."""
    return svc.finetune.run_metrics(agent_id, run_id)


@router.post("/finetunes/{run_id}/cancel", response_model=RunView)
def cancel_finetune(svc: Svc, agent_id: str, run_id: str, principal: AgentOwner) -> RunView:
    """409 if the run already finished."""
    return svc.finetune.cancel_run(agent_id, run_id, principal=principal)


@router.get("/adapters", response_model=list[AdapterView])
def list_adapters(svc: Svc, agent_id: str) -> list[AdapterView]:
    """Adapter versions, newest first; `active` is the one replies use."""
    return svc.finetune.list_adapters(agent_id)


@router.post("/adapters/rollback", response_model=AgentView)
def rollback_adapter(svc: Svc, agent_id: str, principal: AgentOwner) -> AgentView:
    """Re-activate the previously active version (the base model when there is none)."""
    return svc.finetune.rollback(agent_id, principal=principal)


@router.post("/adapters/deactivate", response_model=AgentView)
def deactivate_adapter(svc: Svc, agent_id: str, principal: AgentOwner) -> AgentView:
    """Reply with the base model; the versions stay."""
    return svc.finetune.deactivate(agent_id, principal=principal)


@router.post("/adapters/{name}/activate", response_model=AgentView)
def activate_adapter(svc: Svc, agent_id: str, name: str, principal: AgentOwner) -> AgentView:
    """Replies use this version from the next one on (no reload). 422 if it was trained on
    another base model than the agent uses."""
    return svc.finetune.activate(agent_id, name, principal=principal)


@router.delete("/adapters/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_adapter(svc: Svc, agent_id: str, name: str, principal: AgentOwner) -> Response:
    """Delete a version (409 while it is active)."""
    svc.finetune.delete_adapter(agent_id, name, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
