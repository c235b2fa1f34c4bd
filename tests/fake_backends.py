"""A base for scripted model backends: failure injection and replies a test writes itself.

Tests that are about the chat engine, the routes or concurrency (not about the model) give
``LLMPool`` one of these; each subclass writes only its ``stream``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from agents.llm.base import Completion, SchedulingDefaults, StreamResult, complete_from_stream
from agents.schema import ChatMessage, GenerationSettings


class ScriptedBackend(SchedulingDefaults):
    """``LLMBackend`` whose tokens are words and whose reply is whatever ``stream`` yields."""

    model_name = "scripted"
    context_window = 2048

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        raise NotImplementedError

    def complete(self, messages: list[ChatMessage], params: GenerationSettings) -> Completion:
        return complete_from_stream(self, messages, params)


class SlowLoadingBackend(ScriptedBackend):
    """A model whose ``load`` lasts until the test calls ``finish_loading.set()``: the window in
    which the app answers "the model is loading" stays open exactly as long as the test needs.

    ``loading`` is set once ``load`` has begun; replies are ``reply``, whole.
    """

    model_name = "slow-loading"

    def __init__(self, reply: str = "Hello") -> None:
        self.reply = reply
        self.is_loaded = False
        self.loading = threading.Event()
        self.finish_loading = threading.Event()

    def load(self) -> None:
        self.loading.set()
        if not self.finish_loading.wait(timeout=120):
            raise TimeoutError("the test never let the model finish loading")
        self.is_loaded = True

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        yield self.reply
