"""The seam every language model backend sits behind.

The chat engine builds a list of ``ChatMessage`` and asks a backend to stream text. Backends
differ in where the model runs (in-process transformers, a remote OpenAI-compatible server,
later faster engines), never in what callers see.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
    # One entry per generated token when log-probabilities were asked for, in the OpenAI chat
    # shape (``token``, ``logprob``, ``bytes``, ``top_logprobs``); appended while streaming.
    logprobs: list[dict[str, Any]] = field(default_factory=list)


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


@runtime_checkable
class Schedulable(Protocol):
    """What the scheduler (``agents.llm.scheduler``) needs of a backend besides chatting.

    Every backend declares these itself, or takes the defaults of ``SchedulingDefaults``.
    """

    @property
    def max_concurrency(self) -> int:
        """Requests this backend can run at once (its lane's capacity)."""
        ...

    @property
    def lane_key(self) -> Hashable:
        """What requests queue on: backends that share an engine share a lane."""
        ...

    @property
    def is_loaded(self) -> bool:
        """Whether a request can start now without loading the model first."""
        ...

    def load(self) -> None:
        """Load the model now (idempotent, thread-safe)."""
        ...


class SchedulableBackend(LLMBackend, Schedulable, Protocol):
    """A chat model the scheduler can run: what the factory builds."""


class SchedulingDefaults:
    """For a backend that is always ready and runs one request at a time on its own lane."""

    max_concurrency: int = 1
    is_loaded: bool = True

    @property
    def lane_key(self) -> Hashable:
        return self

    def load(self) -> None:
        """Nothing to load."""


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


def chat_template_options(messages: list[ChatMessage]) -> dict[str, bool]:
    """How to apply a chat template to ``messages``: a list that ends with the assistant is a
    reply to continue (its turn stays open, no new turn is started); any other list asks for
    a new assistant turn."""
    open_turn = bool(messages) and messages[-1].role == "assistant"
    return {"add_generation_prompt": not open_turn, "continue_final_message": open_turn}
