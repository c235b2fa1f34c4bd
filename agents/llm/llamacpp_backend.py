"""``LLMBackend`` on the shared llama.cpp engine (``agents.llm.llamacpp_engine``).

One backend per agent's (model, adapter); the engine it runs on is shared by all of them. What
the engine cannot serve (an adapter it cannot convert, a model it cannot load) is handed to the
transformers backend here, so callers never see which engine answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agents.llm.base import Completion, StreamResult, complete_from_stream
from agents.llm.gguf_convert import UnsupportedByEngine
from agents.llm.llamacpp_engine import (
    MAX_AUTO_CONTEXT,
    LlamaCppEngine,
    engine_threads,
    prefill_threads,
)
from agents.schema import ChatMessage, GenerationSettings
from core.errors import BackendError

__all__ = [
    "MAX_AUTO_CONTEXT",
    "LlamaCppBackend",
    "LlamaCppEngine",
    "engine_threads",
    "prefill_threads",
]

log = logging.getLogger(__name__)


class LlamaCppBackend:
    """``LLMBackend`` for one agent's (model, adapter) on a shared ``LlamaCppEngine``.

    If the engine cannot serve the adapter, this backend becomes the transformers backend
    for it (``fallback_reason`` says why; it is logged once). So does a model the engine cannot
    load when ``fallback_allowed`` (``ANIMA_LLM_ENGINE=auto``).
    """

    def __init__(
        self, engine: LlamaCppEngine, adapter_path: str | None = None, fallback_allowed: bool = True
    ) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.adapter_path = Path(adapter_path) if adapter_path else None
        self.fallback_allowed = fallback_allowed
        self.fallback: Any = None
        self.fallback_reason: str | None = None
        self._ready = False
        self._lock = threading.Lock()

    # ----- what the scheduler reads (``Schedulable``) -------------------------------------
    @property
    def lane_key(self) -> Any:
        return self.fallback.lane_key if self.fallback is not None else self.engine

    @property
    def max_concurrency(self) -> int:
        return 1 if self.fallback is not None else self.settings.llm.parallel

    @property
    def is_loaded(self) -> bool:
        if self.fallback is not None:
            return bool(self.fallback.is_loaded)
        return self._ready and self.engine.is_loaded

    @property
    def request_options(self) -> frozenset[str]:
        """The per-request options honoured (``agents.llm.options``): the engine's all."""
        if self.fallback is not None:
            return frozenset(self.fallback.request_options)
        return frozenset(self.engine.request_options)

    @property
    def engine_name(self) -> str:
        return "transformers" if self.fallback is not None else "llamacpp"

    def load(self) -> None:
        with self._lock:
            if self.fallback is not None:
                self.fallback.load()
                return
            try:
                self.engine.load()
            except UnsupportedByEngine as exc:
                if not self.fallback_allowed:  # ANIMA_LLM_ENGINE=llamacpp was asked for
                    raise BackendError(f"the llama.cpp engine cannot serve this: {exc}") from exc
                self._fall_back(str(exc))
                self.fallback.load()
                return
            if self.adapter_path is not None:
                try:
                    self.engine.prepare_adapter(self.adapter_path)
                except UnsupportedByEngine as exc:  # adapters always fall back
                    self._fall_back(str(exc))
                    self.fallback.load()
                    return
            self._ready = True

    def _fall_back(self, reason: str) -> None:
        from agents.llm.transformers_backend import TransformersBackend

        what = f"adapter {self.adapter_path.name}" if self.adapter_path else "the model"
        log.warning("%s falls back to the transformers backend: %s", what, reason)
        self.fallback_reason = reason
        self.fallback = TransformersBackend(
            self.settings, adapter_path=str(self.adapter_path) if self.adapter_path else None
        )

    # ----- LLMBackend --------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        if self.fallback is not None:
            return self.fallback.model_name
        name = self.engine.name
        return f"{name} + {self.adapter_path.name}" if self.adapter_path else name

    @property
    def context_window(self) -> int:
        self.load()
        if self.fallback is not None:
            return self.fallback.context_window
        return self.engine.context_window

    def count_tokens(self, text: str) -> int:
        self.load()
        if self.fallback is not None:
            return self.fallback.count_tokens(text)
        return self.engine.count_tokens(text)

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        result = result if result is not None else StreamResult()
        self.load()
        if self.fallback is not None:
            return self.fallback.stream(messages, params, result)
        return self.engine.generate(self.adapter_path, messages, params, result)

    def complete(self, messages: list[ChatMessage], params: GenerationSettings) -> Completion:
        return complete_from_stream(self, messages, params)

    def render_chat(self, messages: list[ChatMessage]) -> str:
        """The prompt text the model reads for ``messages`` (its chat template applied)."""
        self.load()
        if self.fallback is not None:
            return str(self.fallback.render_chat(messages))
        return self.engine.render_chat(messages)
