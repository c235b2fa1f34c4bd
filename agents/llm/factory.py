"""The one place that knows which language model backend runs: chosen by settings.

``llm_backend`` picks where the model runs (``local`` or a remote ``openai``-compatible
server); for ``local``, ``llm_engine`` picks how: the llama.cpp engine (the fast default when
``xllamacpp`` is installed) or transformers (the training stack, and the fallback for what the
engine cannot serve).

Callers that must act differently for a remote model ask ``backend_traits`` what the chosen
backend does, never which one it is.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from agents.llm.base import SchedulableBackend
from core.settings import Settings


@dataclass(frozen=True)
class BackendTraits:
    """What the backend that settings pick does, for callers that depend on it."""

    # The model's weights load into this process: an agent's ``model`` names local weights,
    # idle models are unloaded to save memory, and an adapter is checked against its base
    # model here. False for a remote server: an agent's ``model`` is the name the server
    # serves, the server checks its own adapters, and fine-tuning trains on the local copy
    # of the base model (``ANIMA_LLM_MODEL``).
    in_process: bool


def backend_traits(settings: Settings) -> BackendTraits:
    match settings.llm.backend:
        case "local":
            return BackendTraits(in_process=True)
        case "openai":
            return BackendTraits(in_process=False)
        case other:  # settings validation makes this unreachable; kept for type checkers
            raise ValueError(f"unknown llm_backend {other!r}")


def local_engine(settings: Settings) -> str:
    """``llamacpp`` or ``transformers``: what ``llm_engine`` means on this install."""
    if settings.llm.engine == "auto":
        return "llamacpp" if importlib.util.find_spec("xllamacpp") else "transformers"
    return settings.llm.engine


def build_llm(
    settings: Settings,
    adapter_path: str | None = None,
    *,
    adapter_name: str | None = None,
    engines: dict[Any, Any] | None = None,
) -> SchedulableBackend:
    """A backend for ``settings``; nothing is loaded or connected until first use.

    ``adapter_path`` is a peft LoRA folder applied on the local model. A remote server serves
    adapters as model names (vLLM ``--lora-modules name=path``), so there ``adapter_name``
    becomes the request's model. ``engines`` shares one llama.cpp engine per base model
    between the backends of all its adapters (the pool passes its own dict).
    """
    match settings.llm.backend:
        case "local":
            if local_engine(settings) == "llamacpp":
                from agents.llm.llamacpp_backend import LlamaCppBackend, LlamaCppEngine

                key = (settings.llm.model, settings.llm.gguf_file, settings.llm.engine_format)
                shared = engines if engines is not None else {}
                engine = shared.get(key)
                if engine is None:
                    engine = shared[key] = LlamaCppEngine(settings)
                return LlamaCppBackend(
                    engine, adapter_path, fallback_allowed=settings.llm.engine == "auto"
                )
            from agents.llm.transformers_backend import TransformersBackend

            return TransformersBackend(settings, adapter_path=adapter_path)
        case "openai":
            from agents.llm.openai_backend import OpenAICompatBackend

            return OpenAICompatBackend(settings, adapter=adapter_name)
        case other:  # settings validation makes this unreachable; kept for type checkers
            raise ValueError(f"unknown llm_backend {other!r}")
