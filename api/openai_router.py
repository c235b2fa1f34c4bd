"""OpenAI-compatible ``/v1``: each agent is a model; persona and lorebook apply server-side."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request

from agents.chat import ReplyStream
from agents.llm.scheduler import tenant_scope
from agents.service import AgentView
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_body, error_responses
from api.openai_models import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    CompletionUsage,
    ModelCard,
    ModelList,
    ResponseMessage,
)
from api.sse import collect_unless_disconnected, sse_event, sse_response
from container import Services
from core.errors import AnimaError

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


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(
    svc: Svc, body: ChatCompletionRequest, request: Request, principal: Caller
) -> Any:
    """Chat with agent ``model``; the client holds the history (nothing is stored).

    Async so that a request waiting for the model holds no thread; 429 (queue full) and 503
    (model loading) come back before any response starts, with ``Retry-After``.
    """
    messages = [m for m in (msg.to_chat() for msg in body.messages) if m is not None]
    start = partial(
        svc.chat.complete,
        body.model,
        messages,
        body.generation_overrides(),
        user_name=body.user or "User",
    )
    # The tenant travels into the worker thread with the context: the scheduler queues the
    # request in the caller's own lane (fair scheduling).
    with tenant_scope(principal):
        reply = await anyio.to_thread.run_sync(_visible_then(svc, body.model, principal, start))
    svc.usage.track(reply, principal=principal, agent_id=body.model, route="v1.chat")
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(_chunks(reply, completion_id, created, body.model, include_usage))
    text = await collect_unless_disconnected(request, reply)
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[
            Choice(message=ResponseMessage(content=text), finish_reason=reply.usage.finish_reason)
        ],
        usage=_usage(reply),
        sources=reply.sources,
    )


def _visible_then(svc: Services, model: str, principal: Any, start: Any) -> Any:
    """``start``, after the 404 a private agent of someone else answers (in the same thread)."""

    def run() -> Any:
        svc.agents.require_visible(model, principal=principal)
        return start()

    return run


def _usage(reply: ReplyStream) -> CompletionUsage:
    return CompletionUsage(**reply.usage.model_dump(exclude={"finish_reason"}))


async def _chunks(
    reply: ReplyStream, completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return body

    first = chunk({"role": "assistant", "content": ""})
    if reply.sources:  # known before the first token: clients can show them while it streams
        first["sources"] = [s.model_dump(mode="json") for s in reply.sources]
    yield sse_event(first)
    try:
        async for delta in reply:
            yield sse_event(chunk({"content": delta}))
    except AnimaError as exc:
        yield sse_event(error_body(exc.message, type(exc).__name__, exc.status))
        yield sse_event("[DONE]")
        return
    except Exception:  # a bug: still end the stream the way OpenAI clients expect
        log.exception("completion failed")
        yield sse_event(error_body("internal error while writing the reply", "server_error", 500))
        yield sse_event("[DONE]")
        return
    yield sse_event(chunk({}, reply.usage.finish_reason))
    if include_usage:
        yield sse_event({**base, "choices": [], "usage": _usage(reply).model_dump()})
    yield sse_event("[DONE]")
