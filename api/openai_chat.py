"""``POST /v1/chat/completions``: each agent is a model; persona and lorebook apply server-side.

``n`` choices are ``n`` requests started together, so the scheduler admits them as separate
tickets and the llama.cpp engine decodes them in the same steps. With ``tools`` each choice is
decoded under the tools' grammar (``agents.llm.tools``); whether a choice is a call is known
from its first character, so text still streams as it comes and a call is sent whole when it
is complete.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request

from agents.chat import ReplyStream
from agents.llm.scheduler import tenant_scope
from agents.llm.tools import ToolCall, ToolPlan, parse_calls, plan
from agents.schema import ChatMessage
from api.deps import Caller, services
from api.errors import GUARD_ERRORS, error_body, error_responses
from api.openai_models import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    CompletionUsage,
    MessageToolCall,
    ResponseMessage,
    chat_messages,
)
from api.sse import collect_unless_disconnected, sse_event, sse_response
from container import Services
from core.errors import AnimaError

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"], responses=error_responses(*GUARD_ERRORS, 404, 429, 502, 503))
Svc = Annotated[Services, Depends(services)]


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(
    svc: Svc, body: ChatCompletionRequest, request: Request, principal: Caller
) -> Any:
    """Chat with agent ``model``; the client holds the history (nothing is stored).

    Async so that a request waiting for the model holds no thread; 400 (a parameter the
    agent's backend cannot honour), 429 (queue full) and 503 (model loading) come back before
    any response starts.
    """
    options = body.request_options()
    tools = plan(body.tools, body.tool_choice, body.parallel_tool_calls)
    messages = chat_messages(body.messages)
    if tools is not None:
        messages.insert(0, ChatMessage(role="system", content=tools.instructions()))
        options["grammar"] = tools.grammar
    replies = await _start(svc, body, messages, options, principal)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        frames = _chunks(replies, completion_id, created, body, tools, include_usage)
        return sse_response(frames)
    texts = await collect_unless_disconnected(request, _All(replies))
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=body.model,
        choices=[
            _choice(i, text, reply, tools, body)
            for i, (text, reply) in enumerate(zip(texts, replies, strict=True))
        ],
        usage=_usage(replies),
        sources=replies[0].sources,
    )


async def _start(
    svc: Services,
    body: ChatCompletionRequest,
    messages: list[ChatMessage],
    options: dict[str, Any],
    principal: Any,
) -> list[ReplyStream]:
    """Admit the ``n`` choices (each its own ticket); a refusal refuses them all.

    A private agent of someone else answers 404 first. The tenant travels into the worker
    thread with the context: the scheduler queues each choice in the caller's own lane.
    """
    await anyio.to_thread.run_sync(
        lambda: svc.agents.require_visible(body.model, principal=principal)
    )
    generation = body.generation_overrides()
    # A priced agent: each choice's worst case is held before anything is generated (402).
    held = await anyio.to_thread.run_sync(
        lambda: svc.economy.hold(
            body.model,
            principal=principal,
            max_new_tokens=generation.get("max_new_tokens"),
            choices=body.n,
        )
    )
    replies: list[ReplyStream] = []
    try:
        with tenant_scope(principal):
            for i in range(body.n):
                overrides = dict(generation)
                if body.seed is not None:  # reproducible, yet not n copies of one text
                    overrides["seed"] = body.seed + i
                reply = await anyio.to_thread.run_sync(
                    lambda o=overrides: svc.chat.complete(
                        body.model, messages, o, user_name=body.user or "User", options=options
                    )
                )
                # Metered per choice: each is a generation of its own.
                request_id = uuid.uuid4().hex
                svc.usage.track(
                    reply,
                    principal=principal,
                    agent_id=body.model,
                    route="v1.chat",
                    request_id=request_id,
                )
                if held:
                    svc.economy.attach(held[i], reply, request_id)
                replies.append(reply)
    except BaseException:
        svc.economy.release(held)  # no reply started: none of them is charged
        raise
    return replies


class _All:
    """The ``n`` replies collected together (they generate concurrently)."""

    def __init__(self, replies: list[ReplyStream]) -> None:
        self.replies = replies

    async def acollect(self) -> list[str]:
        return list(await asyncio.gather(*(r.acollect() for r in self.replies)))


def _usage(replies: list[ReplyStream]) -> CompletionUsage:
    """One prompt, ``n`` completions (as OpenAI counts them)."""
    prompt = replies[0].usage.prompt_tokens
    completion = sum(r.usage.completion_tokens for r in replies)
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _logprobs(entries: list[dict[str, Any]], body: ChatCompletionRequest) -> list[dict[str, Any]]:
    """llama.cpp's entries with as many alternatives as asked (it always sends one)."""
    keep = body.top_logprobs or 0
    return [{**e, "top_logprobs": e.get("top_logprobs", [])[:keep]} for e in entries]


def _tool_calls(calls: list[ToolCall]) -> list[MessageToolCall]:
    return [
        MessageToolCall.model_validate(
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        )
        for c in calls
    ]


def _choice(
    index: int,
    text: str,
    reply: ReplyStream,
    tools: ToolPlan | None,
    body: ChatCompletionRequest,
) -> Choice:
    calls = parse_calls(text) if tools is not None else None
    logprobs = (
        ChoiceLogprobs.model_validate({"content": _logprobs(reply.result.logprobs, body)})
        if body.logprobs
        else None
    )
    if calls:
        message = ResponseMessage(content=None, tool_calls=_tool_calls(calls))
        return Choice(index=index, message=message, finish_reason="tool_calls", logprobs=logprobs)
    return Choice(
        index=index,
        message=ResponseMessage(content=text),
        finish_reason=reply.usage.finish_reason,
        logprobs=logprobs,
    )


# Each choice's deltas, tagged with its index; ``None`` ends the choice, an exception fails it.
_DeltaQueue = asyncio.Queue[tuple[int, str | None, BaseException | None]]


async def _chunks(
    replies: list[ReplyStream],
    completion_id: str,
    created: int,
    body: ChatCompletionRequest,
    tools: ToolPlan | None,
    include_usage: bool,
) -> AsyncIterator[str]:
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": body.model,
    }
    chunk = _chunk_builder(base, body, include_usage)
    for index, reply in enumerate(replies):
        first = chunk(index, {"role": "assistant", "content": ""}, frame=True)
        if reply.sources:  # known before the first token: clients can show them meanwhile
            first["sources"] = [s.model_dump(mode="json") for s in reply.sources]
        yield sse_event(first)
    queue: _DeltaQueue = asyncio.Queue()
    tasks = [asyncio.create_task(_pump(queue, i, r)) for i, r in enumerate(replies)]
    states = [_ChoiceState() for _ in replies]
    try:
        left = len(replies)
        while left:
            index, delta, error = await queue.get()
            state, reply = states[index], replies[index]
            if error is not None:
                yield _error_event(error)
                yield sse_event("[DONE]")
                return
            if delta is not None:
                for frame in state.feed(delta, tools is not None):
                    yield chunk(index, {"content": frame}, logprobs=state.new_logprobs(reply, body))
                continue
            left -= 1
            for frame in _finish_choice(index, state, reply, body, chunk):
                yield frame
        if include_usage:
            yield sse_event({**base, "choices": [], "usage": _usage(replies).model_dump()})
        yield sse_event("[DONE]")
    finally:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)


def _chunk_builder(
    base: dict[str, Any], body: ChatCompletionRequest, include_usage: bool
) -> Callable[..., Any]:
    """Builds one choice's chunk: an SSE event, or (``frame``) the dict to add fields to."""

    def chunk(
        index: int,
        delta: dict[str, Any],
        finish: str | None = None,
        logprobs: Any = None,
        frame: bool = False,
    ) -> Any:
        choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
        if body.logprobs:
            choice["logprobs"] = {"content": logprobs} if logprobs is not None else None
        out: dict[str, Any] = {**base, "choices": [choice]}
        if include_usage:
            out["usage"] = None
        return out if frame else sse_event(out)

    return chunk


async def _pump(queue: _DeltaQueue, index: int, reply: ReplyStream) -> None:
    """Moves one choice's deltas onto the shared queue, so choices stream side by side.

    The reply's stream is closed here, also when the client went away and this task is
    cancelled: closing it stops generation and stores and meters what was written. Left to
    the garbage collector, a cancelled reply was metered late or not at all."""
    deltas = reply.__aiter__()
    try:
        async for delta in deltas:
            await queue.put((index, delta, None))
    except BaseException as exc:  # reported on the stream; a cancellation is re-raised
        await queue.put((index, None, exc))
        if isinstance(exc, asyncio.CancelledError):
            raise
        return
    finally:
        with anyio.CancelScope(shield=True):
            await deltas.aclose()  # type: ignore[attr-defined]
    await queue.put((index, None, None))


def _error_event(error: BaseException) -> str:
    """A failed choice as an ``error`` event: a domain error's own message, else a generic one."""
    if isinstance(error, AnimaError):
        return sse_event(error_body(error.message, type(error).__name__, error.status))
    log.error("completion failed", exc_info=error)
    return sse_event(error_body("internal error while writing the reply", "server_error", 500))


class _ChoiceState:
    """One streamed choice: whether it is a call (held back until whole) and its logprobs."""

    def __init__(self) -> None:
        self.held = ""  # text not sent yet: a possible call
        self.is_call: bool | None = None  # decided by the first non-space character
        self.sent_logprobs = 0

    def feed(self, delta: str, tools: bool) -> list[str]:
        if not tools or self.is_call is False:
            return [delta]
        self.held += delta
        if self.is_call is None and self.held.strip():
            self.is_call = self.held[:1] in ("{", "[")
            if not self.is_call:
                text, self.held = self.held, ""
                return [text]
        return []

    def new_logprobs(self, reply: ReplyStream, body: ChatCompletionRequest) -> Any:
        if not body.logprobs:
            return None
        entries = reply.result.logprobs[self.sent_logprobs :]
        self.sent_logprobs += len(entries)
        return _logprobs(entries, body)


def _finish_choice(
    index: int, state: _ChoiceState, reply: ReplyStream, body: ChatCompletionRequest, chunk: Any
) -> list[str]:
    frames = []
    calls = parse_calls(state.held) if state.held else None
    if calls:
        for j, call in enumerate(calls):
            # The first delta of each call carries its index, id and type; then its arguments.
            head = {"index": j, "id": call.id, "type": "function"}
            head["function"] = {"name": call.name, "arguments": ""}
            frames.append(chunk(index, {"tool_calls": [head]}))
            args = {"index": j, "function": {"arguments": call.arguments}}
            frames.append(chunk(index, {"tool_calls": [args]}))
        frames.append(chunk(index, {}, "tool_calls", state.new_logprobs(reply, body)))
        return frames
    if state.held:  # looked like a call but was cut short: it is text after all
        frames.append(chunk(index, {"content": state.held}))
    frames.append(chunk(index, {}, reply.usage.finish_reason, state.new_logprobs(reply, body)))
    return frames
