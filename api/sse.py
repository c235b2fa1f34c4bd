"""Server-sent events: turn an iterator of frames into a ``text/event-stream`` response.

Starlette iterates a sync iterator in a thread pool but never closes it when the client goes
away. Replies hold the model's lock while they stream, so an abandoned one must be closed
deterministically: ``_closing`` does that, shielded from the cancellation that ends the
response.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi.responses import StreamingResponse

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


def sse_response(frames: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(
        _closing(frames),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
