"""A backend that talks to any OpenAI-compatible chat server (vLLM, llama.cpp, Ollama, ...).

This is how Anima uses a model too large or too slow for in-process transformers: run it in a
dedicated server and point ``ANIMA_OPENAI_BASE_URL`` at it. The server's tokenizer is not
known here, so ``count_tokens`` estimates (about 4 characters per token for English text,
rounded up); the chat engine only uses it to trim history, where a slight overestimate is
the safe side. Set ``ANIMA_LLM_CONTEXT_WINDOW`` to the served model's real window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx

from agents.llm.base import Completion, StreamResult, complete_from_stream
from agents.llm.options import wants
from agents.schema import ChatMessage, GenerationSettings
from core.errors import BackendError
from core.settings import Settings

DEFAULT_CONTEXT_WINDOW = 4096
CHARS_PER_TOKEN = 4
MAX_SERVER_STOPS = 4  # what the OpenAI API accepts in ``stop``


class OpenAICompatBackend:
    """``LLMBackend`` over ``POST {base_url}/chat/completions`` with ``stream: true`` (SSE)."""

    # Per-request options passed on to the server as OpenAI fields (``agents.llm.options``).
    # A grammar in llguidance syntax, tools and raw prompts are not: those are refused (400).
    request_options: frozenset[str] = frozenset(
        {"presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "response_format"}
    )

    def __init__(
        self, settings: Settings, client: httpx.Client | None = None, adapter: str | None = None
    ) -> None:
        self.settings = settings
        # vLLM serves each LoRA adapter as a model of its own (``--lora-modules name=path``):
        # an agent's adapter travels as the request's model name.
        self.request_model = adapter or settings.llm.openai_model
        self.base_url = settings.llm.openai_base_url.rstrip("/")
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(settings.llm.openai_timeout_s, connect=10.0),
            headers={"Authorization": f"Bearer {settings.llm.openai_api_key}"},
        )

    # What the scheduler reads (``Schedulable``): the remote server batches; cap what is in
    # flight. The server holds the model, so there is nothing to load here.
    is_loaded = True
    engine_name = "openai"

    def load(self) -> None:
        """Nothing to load: the remote server holds the model."""

    @property
    def lane_key(self) -> str:
        return self.base_url

    @property
    def max_concurrency(self) -> int:
        return self.settings.llm.parallel

    @property
    def model_name(self) -> str:
        return self.request_model

    @property
    def context_window(self) -> int:
        return self.settings.llm.context_window or DEFAULT_CONTEXT_WINDOW

    def count_tokens(self, text: str) -> int:
        """Estimate: the remote tokenizer is unknown; ~4 characters per token, rounded up."""
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def complete(self, messages: list[ChatMessage], params: GenerationSettings) -> Completion:
        return complete_from_stream(self, messages, params)

    def close(self) -> None:
        self._client.close()

    def payload(self, messages: list[ChatMessage], params: GenerationSettings) -> dict[str, Any]:
        """The request body. ``top_k``/``repetition_penalty`` are vLLM's names for these
        non-standard knobs; llama.cpp and Ollama ignore what they do not know."""
        body: dict[str, Any] = {
            "model": self.request_model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "repetition_penalty": params.repetition_penalty,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            # The OpenAI API accepts at most four; the rest are cut here (see ``stream``).
            body["stop"] = params.stop[:MAX_SERVER_STOPS]
        for name in ("presence_penalty", "frequency_penalty", "response_format"):
            if value := wants(params, name):
                body[name] = value
        if bias := wants(params, "logit_bias"):
            body["logit_bias"] = {str(token): value for token, value in bias.items()}
        if wants(params, "logprobs"):
            body["logprobs"] = True
            body["top_logprobs"] = wants(params, "top_logprobs") or 0
        return body

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        """Yield ``choices[0].delta.content`` of each SSE chunk until ``data: [DONE]``.

        Stopping the iteration early closes the HTTP response, which tells the server to
        stop generating.
        """
        result = result if result is not None else StreamResult()
        extra_stops = params.stop[MAX_SERVER_STOPS:]
        if extra_stops:  # more stops than the server takes: cut the rest client-side
            yield from _cut_at_stops(self._stream(messages, params, result), extra_stops)
            return
        yield from self._stream(messages, params, result)

    def _stream(
        self, messages: list[ChatMessage], params: GenerationSettings, result: StreamResult
    ) -> Iterator[str]:
        url = f"{self.base_url}/chat/completions"
        emitted: list[str] = []
        usage: dict[str, Any] | None = None
        finish: str | None = None
        try:
            with self._client.stream("POST", url, json=self.payload(messages, params)) as resp:
                if resp.status_code >= 300:
                    body = resp.read().decode("utf-8", errors="replace")[:500]
                    raise BackendError(
                        f"LLM server at {self.base_url} answered HTTP {resp.status_code}: {body}"
                    )
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, event: lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = _parse_chunk(data, self.base_url)
                    if chunk.get("error"):
                        raise BackendError(f"LLM server at {self.base_url}: {chunk['error']}")
                    usage = chunk.get("usage") or usage
                    result.model = chunk.get("model") or result.model
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        logprobs = (choice.get("logprobs") or {}).get("content")
                        if logprobs and wants(params, "logprobs"):
                            result.logprobs.extend(logprobs)
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            emitted.append(text)
                            yield text
        except httpx.HTTPError as exc:
            raise BackendError(
                f"LLM server at {self.base_url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if usage:
            result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            result.completion_tokens = int(usage.get("completion_tokens") or 0)
        else:  # a server that does not honour stream_options: estimate
            result.prompt_tokens = sum(self.count_tokens(m.content) for m in messages)
            result.completion_tokens = self.count_tokens("".join(emitted))
        result.finish_reason = "length" if finish == "length" else "stop"


def _cut_at_stops(deltas: Iterator[str], stops: list[str]) -> Iterator[str]:
    """``deltas`` up to the first of ``stops``; closing it closes the server's stream too."""
    from agents.llm.transformers_backend import _StopCutter  # stdlib-only at import time

    cutter = _StopCutter(stops)
    try:
        for delta in deltas:
            text, stopped = cutter.feed(delta)
            if text:
                yield text
            if stopped:
                return
        if tail := cutter.flush():
            yield tail
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()


def _parse_chunk(data: str, base_url: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise BackendError(f"LLM server at {base_url} sent a malformed stream chunk") from exc
    if not isinstance(chunk, dict):
        raise BackendError(f"LLM server at {base_url} sent a malformed stream chunk")
    return chunk
