"""Server-sent events: turn frames into a ``text/event-stream`` response.

Model replies arrive as async iterators (``ReplyStream.__aiter__``): waiting for the model
holds no thread, and when the client goes away the response closes the iterator
(``_ClosingStreamingResponse``), which cancels the request in the scheduler, queued or
running, and stores and meters what was written.

Sync iterators (job progress) are stepped in a worker thread. Starlette never closes a sync
iterator when the client goes away, so ``_closing`` does that deterministically, shielded from
the cancellation that ends the response.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

_END = object()


def sse_event(data: Any, event: str | None = None) -> str:
    """One SSE frame; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


async def _closing(frames: Iterator[str]) -> AsyncIterator[str]:
    try:
        while True:
            item = await anyio.to_thread.run_sync(next, frames, _END)
            if item is _END:
                break
            yield item
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)


async def _closing_async(frames: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for item in frames:
            yield item
    finally:
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the response ends, however it ends.

    Starlette stops iterating the body when a write fails because the client left, but it
    leaves the body generator suspended at its ``yield``: its ``finally`` (which cancels the
    model request, stores the reply and meters it) would then run only when the garbage
    collector finalizes it, late or never. Closing it here makes that deterministic."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


def sse_response(frames: Iterator[str] | AsyncIterator[str]) -> StreamingResponse:
    body = _closing_async(frames) if hasattr(frames, "__anext__") else _closing(frames)  # type: ignore[arg-type]
    return _ClosingStreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def collect_unless_disconnected(request: Request, reply: Any) -> str:
    """Run a non-streamed reply to the end, cancelling it if the client disconnects.

    A sync handler would never notice a client that hung up and would keep its place in the
    model's queue; here a watcher polls for the disconnect and cancels the collection, which
    cancels the request in the scheduler (queued or running).
    """
    text = ""
    error: Exception | None = None
    async with anyio.create_task_group() as group:

        async def watch() -> None:
            while True:
                if await request.is_disconnected():
                    group.cancel_scope.cancel()
                    return
                await anyio.sleep(0.25)

        group.start_soon(watch)
        try:
            text = await reply.acollect()
        except Exception as exc:  # raised outside the group: not wrapped in an ExceptionGroup
            error = exc
        group.cancel_scope.cancel()
    if error is not None:
        raise error  # e.g. a 409 when the conversation was deleted meanwhile
    return text
