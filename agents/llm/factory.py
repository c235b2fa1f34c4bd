"""The one place that knows which language model backend runs: chosen by ``llm_backend``."""

from __future__ import annotations

from agents.llm.base import LLMBackend
from core.settings import Settings


def build_llm(settings: Settings) -> LLMBackend:
    """A backend for ``settings``; nothing is loaded or connected until first use."""
    match settings.llm_backend:
        case "local":
            from agents.llm.transformers_backend import TransformersBackend

            return TransformersBackend(settings)
        case "openai":
            from agents.llm.openai_backend import OpenAICompatBackend

            return OpenAICompatBackend(settings)
        case other:  # settings validation makes this unreachable; kept for type checkers
            raise ValueError(f"unknown llm_backend {other!r}")
