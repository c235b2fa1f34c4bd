"""The one place that knows which language model backend runs: chosen by settings.

``llm_backend`` picks where the model runs (``local`` or a remote ``openai``-compatible
server); for ``local``, ``llm_engine`` picks how: the llama.cpp engine (the fast default when
``xllamacpp`` is installed) or transformers (the training stack, and the fallback for what the
engine cannot serve).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from agents.llm.base import LLMBackend
from core.settings import Settings


def local_engine(settings: Settings) -> str:
    """``llamacpp`` or ``transformers``: what ``llm_engine`` means on this install."""
    if settings.llm_engine == "auto":
        return "llamacpp" if importlib.util.find_spec("xllamacpp") else "transformers"
    return settings.llm_engine


def build_llm(
    settings: Settings,
    adapter_path: str | None = None,
    *,
    adapter_name: str | None = None,
    engines: dict[Any, Any] | None = None,
) -> LLMBackend:
    """A backend for ``settings``; nothing is loaded or connected until first use.

    ``adapter_path`` is a peft LoRA folder applied on the local model. A remote server serves
    adapters as model names (vLLM ``--lora-modules name=path``), so there ``adapter_name``
    becomes the request's model. ``engines`` shares one llama.cpp engine per base model
    between the backends of all its adapters (the pool passes its own dict).
    """
    match settings.llm_backend:
        case "local":
            if local_engine(settings) == "llamacpp":
                from agents.llm.llamacpp_backend import LlamaCppBackend, LlamaCppEngine

                key = (settings.llm_model, settings.llm_gguf_file, settings.llm_engine_format)
                shared = engines if engines is not None else {}
                engine = shared.get(key)
                if engine is None:
                    engine = shared[key] = LlamaCppEngine(settings)
                return LlamaCppBackend(
                    engine, adapter_path, fallback_allowed=settings.llm_engine == "auto"
                )
            from agents.llm.transformers_backend import TransformersBackend

            return TransformersBackend(settings, adapter_path=adapter_path)
        case "openai":
            from agents.llm.openai_backend import OpenAICompatBackend

            return OpenAICompatBackend(settings, adapter=adapter_name)
        case other:  # settings validation makes this unreachable; kept for type checkers
            raise ValueError(f"unknown llm_backend {other!r}")
