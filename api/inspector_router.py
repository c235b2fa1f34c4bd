"""The prompt inspector over HTTP: what the model will read for a sample message.

``POST /api/agents/{agent_id}/prompt-preview`` answers with the prompt part by part, each
part's tokens in the model's tokenizer, the total against the context window, the lorebook
entries that fired (with the key that fired each) and what the budget left out. Anyone who may
chat with the agent may preview it; ``draft`` (unsaved card fields) is the owner's only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from agents.prompt_preview import PreviewRequest, PromptPreview
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, OWNER_ERRORS, error_responses
from container import Services

router = APIRouter(
    prefix="/api/agents",
    tags=["agents"],
    responses=error_responses(*GUARD_ERRORS, *OWNER_ERRORS, 404),
)
Svc = Annotated[Services, Depends(services)]


@router.post("/{agent_id}/prompt-preview", response_model=PromptPreview)
def prompt_preview(
    svc: Svc, agent_id: str, body: PreviewRequest, principal: Caller
) -> PromptPreview:
    """The exact prompt a reply to ``message`` would read now (in ``conversation_id`` when
    given, for the ``draft`` card fields when given)."""
    return svc.inspector.preview(
        agent_id,
        body.message,
        conversation_id=body.conversation_id,
        draft=body.draft,
        generation=body.generation,
        principal=principal,
    )
