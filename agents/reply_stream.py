"""A reply as it streams: text deltas for the reader, stored once the stream ends.

Iterate a ``ReplyStream`` for text deltas (the API turns them into SSE, the UI into a growing
chat bubble); when iteration ends, normally or because the client went away, whatever was
generated is handed to its ``save`` (``agents.reply_modes``) and the stored message is kept
on ``message``. ``agents.chat`` builds them; ``agents.chat`` also re-exports both names.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
from pydantic import BaseModel

from agents.conversations import MessageView
from agents.grounding import Source
from agents.llm.base import StreamResult
from core.errors import AnimaError

log = logging.getLogger(__name__)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    finish_reason: str = "stop"


class ReplyStream:
    """Text deltas of one reply; ``message`` and ``usage`` are set once iteration ends."""

    def __init__(
        self,
        deltas: Iterator[str],
        result: StreamResult,
        on_done: Callable[[str], MessageView | None],
    ) -> None:
        self._deltas = deltas
        self._result = result
        self._on_done = on_done
        self._stepping = threading.Lock()  # one step of ``_deltas`` at a time, close included
        self.message: MessageView | None = None
        self.usage = Usage()
        self.text = ""
        self.sources: list[Source] = []  # the knowledge this reply was grounded on
        # Called with (reply, outcome) once it ends: "ok", "cancelled" or "error:<status>".
        # Usage metering listens here, so it sees every reply however it is consumed.
        self.on_finish: list[Callable[[ReplyStream, str], None]] = []
        self.outcome = "ok"
        self.name: str | None = None  # the speaking member and its id, in a group chat
        self.speaker_id: str | None = None
        self.waiting = False  # a group chat that replies only when asked: nothing comes

    @property
    def result(self) -> StreamResult:
        """What the backend reports while it streams (log-probabilities) and when done."""
        return self._result

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []
        finished = False
        try:
            for delta in self._deltas:
                parts.append(delta)
                yield delta
            finished = True
        finally:
            # Closing the backend's stream stops generation and frees the model at once.
            close = getattr(self._deltas, "close", None)
            if close is not None:
                close()
            self.outcome = _outcome(finished, sys.exc_info()[1])
            self._finish(parts, finished)

    async def __aiter__(self) -> AsyncIterator[str]:
        """The same deltas for async callers (the API): waiting for the model holds no
        thread, and a cancelled task (a client disconnect) cancels the request."""
        parts: list[str] = []
        finished = False
        try:
            if hasattr(self._deltas, "__anext__"):
                async for delta in self._deltas:  # type: ignore[attr-defined]
                    parts.append(delta)
                    yield delta
            else:  # a plain iterator: step it in a worker thread
                step = anyio.to_thread.run_sync
                while (delta := await step(self._step)) is not None:
                    parts.append(delta)
                    yield delta
            finished = True
        finally:
            self.outcome = _outcome(finished, sys.exc_info()[1])
            with anyio.CancelScope(shield=True):  # store what arrived, even when cancelled
                await anyio.to_thread.run_sync(self._close_and_finish, parts, finished)

    def _step(self) -> str | None:
        with self._stepping:
            return next(self._deltas, None)

    def _close_and_finish(self, parts: list[str], finished: bool) -> None:
        """Close the backend's stream, then store and meter. A cancelled reader may leave a
        step still running in its worker thread (the model is between tokens); a generator
        cannot be closed while it runs, so this waits for that step first."""
        try:
            with self._stepping:
                close = getattr(self._deltas, "close", None)
                if close is not None:
                    close()
        finally:
            self._finish(parts, finished)

    def _finish(self, parts: list[str], finished: bool) -> None:
        try:
            self._store(parts, finished)
        finally:
            for listener in self.on_finish:
                try:
                    listener(self, self.outcome)
                except Exception:  # a listener's bug must not lose the reply
                    log.exception("reply listener failed")

    def _store(self, parts: list[str], finished: bool) -> None:
        self.text = "".join(parts)
        r = self._result
        self.usage = Usage(
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            total_tokens=r.prompt_tokens + r.completion_tokens,
            finish_reason=r.finish_reason,
        )
        if self.text.strip():
            try:
                self.message = self._on_done(self.text)
            except AnimaError as exc:
                if finished:
                    raise  # the reader is still there: tell it (409, an SSE error frame)
                # The model failed or the reader left: that is what they will see.
                log.warning("reply not stored: %s", exc.message)

    def collect(self) -> str:
        """Run the whole reply and return its text."""
        for _ in self:
            pass
        return self.text

    async def acollect(self) -> str:
        """``collect`` for async callers."""
        async for _ in self:
            pass
        return self.text


def _outcome(finished: bool, error: BaseException | None) -> str:
    if finished:
        return "ok"
    if isinstance(error, AnimaError):
        return f"error:{error.status}"
    if error is None or isinstance(error, GeneratorExit | anyio.get_cancelled_exc_class()):
        return "cancelled"  # the reader stopped reading (or went away)
    return "error:500"
