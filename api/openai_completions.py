"""``POST /v1/completions`` (text completion) and ``POST /v1/embeddings`` (the knowledge embedder).

Text completion continues the client's prompt as is (``agents.text_completion``: the agent's
persona is not added). Embeddings come from the embedder the knowledge bases index with, so a
client can search its own copy of the same vectors; ``model`` may be any name.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request

from agents.chat import ReplyStream
from agents.llm.scheduler import tenant_scope
from agents.text_completion import TextCompletionService
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_body, error_responses
from api.openai_models import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionUsage,
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    TextCompletion,
)
from api.sse import collect_unless_disconnected, sse_event, sse_response
from container import Services
from core.errors import AnimaError

router = APIRouter(tags=["openai"], responses=error_responses(*GUARD_ERRORS, 404, 429, 502, 503))
Svc = Annotated[Services, Depends(services)]


@router.post(
    "/completions",
    response_model=TextCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def completions(
    svc: Svc, body: CompletionRequest, request: Request, principal: Caller
) -> Any:
    """Continue ``prompt`` (or each prompt of a list) ``n`` times with agent ``model``.

    Visibility and fair scheduling as in chat: a private agent of someone else is a 404, and
    each completion waits in the caller's own lane.
    """
    prompts = body.prompts()
    options = body.request_options()
    generation = body.generation_overrides()
    await anyio.to_thread.run_sync(
        lambda: svc.agents.require_visible(body.model, principal=principal)
    )
    service = TextCompletionService(svc.agents, svc.llm)
    # A priced agent: each completion's worst case is held before anything is generated (402).
    held = await anyio.to_thread.run_sync(
        lambda: svc.economy.hold(
            body.model,
            principal=principal,
            max_new_tokens=generation.get("max_new_tokens"),
            choices=len(prompts) * body.n,
        )
    )
    replies: list[ReplyStream] = []
    try:
        with tenant_scope(principal):
            for prompt in prompts:
                for i in range(body.n):
                    overrides = dict(generation)
                    if body.seed is not None:
                        overrides["seed"] = body.seed + i
                    reply = await anyio.to_thread.run_sync(
                        lambda p=prompt, o=overrides: service.complete(body.model, p, o, options)
                    )
                    request_id = uuid.uuid4().hex
                    svc.usage.track(
                        reply,
                        principal=principal,
                        agent_id=body.model,
                        route="v1.completions",
                        request_id=request_id,
                    )
                    if held:
                        svc.economy.attach(held[len(replies)], reply, request_id)
                    replies.append(reply)
    except BaseException:
        svc.economy.release(held)  # no reply started: none of them is charged
        raise
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(_chunks(replies, completion_id, created, body, include_usage))
    texts = await collect_unless_disconnected(request, _All(replies))
    return TextCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[
            CompletionChoice(
                index=i,
                text=text,
                finish_reason=reply.usage.finish_reason,
                logprobs=_logprobs(reply.result.logprobs, body)
                if body.logprobs is not None
                else None,
            )
            for i, (text, reply) in enumerate(zip(texts, replies, strict=True))
        ],
        usage=_usage(replies, body.n),
    )


class _All:
    def __init__(self, replies: list[ReplyStream]) -> None:
        self.replies = replies

    async def acollect(self) -> list[str]:
        return list(await asyncio.gather(*(r.acollect() for r in self.replies)))


def _usage(replies: list[ReplyStream], n: int) -> CompletionUsage:
    """Each prompt counted once, every completion counted."""
    prompt = sum(r.usage.prompt_tokens for r in replies[::n])
    completion = sum(r.usage.completion_tokens for r in replies)
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _logprobs(entries: list[dict[str, Any]], body: CompletionRequest, offset: int = 0) -> Any:
    """The legacy completion shape: parallel lists, alternatives as token -> logprob."""
    keep = body.logprobs or 0
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return CompletionLogprobs(
        tokens=[e["token"] for e in entries],
        token_logprobs=[e["logprob"] for e in entries],
        top_logprobs=[
            {t["token"]: t["logprob"] for t in e.get("top_logprobs", [])[:keep]} for e in entries
        ],
        text_offset=offsets,
    )


async def _chunks(
    replies: list[ReplyStream],
    completion_id: str,
    created: int,
    body: CompletionRequest,
    include_usage: bool,
) -> AsyncIterator[str]:
    base = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": body.model,
    }

    def frame(index: int, text: str, finish: str | None, logprobs: Any = None) -> str:
        choice = {"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}
        out: dict[str, Any] = {**base, "choices": [choice]}
        if include_usage:
            out["usage"] = None
        return sse_event(out)

    # Choices stream one after another here (they still generate concurrently): text
    # completion clients read one choice's text per chunk.
    for index, reply in enumerate(replies):
        sent, chars = 0, 0
        try:
            async for delta in reply:
                logprobs = None
                if body.logprobs is not None:
                    entries = reply.result.logprobs[sent:]
                    sent += len(entries)
                    logprobs = _logprobs(entries, body, chars).model_dump()
                chars += len(delta)
                yield frame(index, delta, None, logprobs)
        except AnimaError as exc:
            yield sse_event(error_body(exc.message, type(exc).__name__, exc.status))
            yield sse_event("[DONE]")
            return
        yield frame(index, "", reply.usage.finish_reason)
    if include_usage:
        yield sse_event({**base, "choices": [], "usage": _usage(replies, body.n).model_dump()})
    yield sse_event("[DONE]")


@router.post("/embeddings", response_model=EmbeddingList)
async def embeddings(svc: Svc, body: EmbeddingRequest) -> EmbeddingList:
    """Vectors from the knowledge bases' embedder (unit length: cosine = dot product)."""
    texts = body.texts()
    embedder = svc.knowledge.embedder
    vectors = await anyio.to_thread.run_sync(embedder.embed_documents, texts)
    tokens = await anyio.to_thread.run_sync(lambda: sum(embedder.count_tokens(t) for t in texts))
    data = [
        Embedding(index=i, embedding=_encode(v, body.encoding_format))
        for i, v in enumerate(vectors)
    ]
    return EmbeddingList(
        data=data,
        model=embedder.model_id,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    """``base64``: little-endian float32, as OpenAI sends it (the openai package decodes it)."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector
