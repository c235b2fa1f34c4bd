"""One loaded backend per distinct model, shared by every agent that uses it.

Agents may name their own model (``AgentView.model``); most use the install's default. Loading
a model costs seconds and hundreds of MB, so each is built once, on first use, and kept.
"""

from __future__ import annotations

import threading

from agents.llm.base import LLMBackend
from agents.llm.factory import build_llm
from core.settings import Settings


class LLMPool:
    def __init__(self, settings: Settings, default: LLMBackend | None = None) -> None:
        self.settings = settings
        self._backends: dict[str | None, LLMBackend] = {}
        if default is not None:
            self._backends[None] = default
        self._lock = threading.Lock()

    def get(self, model: str | None = None) -> LLMBackend:
        """The backend for ``model`` (``None``: the configured default)."""
        key = model or None
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                settings = self.settings
                if key is not None:
                    field = "openai_model" if settings.llm_backend == "openai" else "llm_model"
                    settings = settings.model_copy(update={field: key})
                backend = build_llm(settings)
                self._backends[key] = backend
            return backend
