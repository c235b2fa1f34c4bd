"""OpenAI-compatible ``/v1``: each agent is a model; persona and lorebook apply server-side.

This module lists the models; chat (``api.openai_chat``), text completion and embeddings
(``api.openai_completions``) live beside it, under the same prefix.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends

from agents.service import AgentView
from api import openai_chat, openai_completions
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_responses
from api.openai_models import ModelCard, ModelList
from container import Services

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1", tags=["openai"], responses=error_responses(*GUARD_ERRORS, 404, 429, 502, 503)
)
Svc = Annotated[Services, Depends(services)]


def _model_card(agent: AgentView) -> ModelCard:
    return ModelCard(
        id=agent.id,
        created=int(agent.created_at.timestamp()),
        owned_by=agent.owner_address or "anima",
        name=agent.name,
    )


@router.get("/models", response_model=ModelList)
def list_models(svc: Svc, principal: Caller) -> ModelList:
    """Public agents and the caller's own (unlisted and private ones included)."""
    return ModelList(data=[_model_card(a) for a in svc.agents.list_visible(principal=principal)])


@router.get("/models/{model_id}", response_model=ModelCard)
def get_model(svc: Svc, model_id: str, principal: Caller) -> ModelCard:
    return _model_card(svc.agents.get_visible(model_id, principal=principal))


# The generation routes, one module per responsibility, under the same ``/v1`` prefix.
router.include_router(openai_chat.router)
router.include_router(openai_completions.router)
