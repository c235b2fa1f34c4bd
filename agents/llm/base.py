"""The seam every language model backend sits behind.

The chat engine builds a list of ``ChatMessage`` and asks a backend to stream text. Backends
differ in where the model runs (in-process transformers, a remote OpenAI-compatible server,
later faster engines), never in what callers see.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agents.schema import ChatMessage, GenerationSettings


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


@dataclass
class StreamResult:
    """Filled in by a backend while a stream runs; read after the iterator is exhausted."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    cached_tokens: int = 0  # prompt tokens served from a prefix cache (where the engine says)
    model: str | None = None  # the model the server says answered (remote backends)


@runtime_checkable
class LLMBackend(Protocol):
    """A chat model. Implementations must be safe to call from several threads."""

    @property
    def model_name(self) -> str:
        """Human readable name of the model being served."""
        ...

    @property
    def context_window(self) -> int:
        """Tokens the model can attend to, prompt plus reply."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs in this model's tokenizer (used to trim history)."""
        ...

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        """Yield the reply as text deltas; fill ``result`` with usage when done."""
        ...

    def complete(self, messages: list[ChatMessage], params: GenerationSettings) -> Completion:
        """The whole reply at once."""
        ...


def complete_from_stream(
    backend: LLMBackend, messages: list[ChatMessage], params: GenerationSettings
) -> Completion:
    """``complete`` for any backend whose ``stream`` fills a ``StreamResult``."""
    result = StreamResult()
    text = "".join(backend.stream(messages, params, result))
    return Completion(
        text=text,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        finish_reason=result.finish_reason,
    )
