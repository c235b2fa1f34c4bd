"""A base for scripted model backends: failure injection and replies a test writes itself.

Tests that are about the chat engine, the routes or concurrency (not about the model) give
``LLMPool`` one of these; each subclass writes only its ``stream``.
"""

from __future__ import annotations

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
