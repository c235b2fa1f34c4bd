"""The one place that knows which language model backend runs: chosen by ``llm_backend``."""

from __future__ import annotations

from agents.llm.base import LLMBackend
from core.errors import BackendError
from core.settings import Settings


def build_llm(settings: Settings, adapter_path: str | None = None) -> LLMBackend:
    """A backend for ``settings``; nothing is loaded or connected until first use.

    ``adapter_path`` is a peft LoRA folder applied on the local model. A remote server serves
    its adapters as model names (vLLM ``--lora-modules``), so there the agent names the
    adapter as its ``model`` instead.
    """
    match settings.llm_backend:
        case "local":
            from agents.llm.transformers_backend import TransformersBackend

            return TransformersBackend(settings, adapter_path=adapter_path)
        case "openai":
            from agents.llm.openai_backend import OpenAICompatBackend

            if adapter_path is not None:
                raise BackendError(
                    "LoRA adapters run on the local backend; with ANIMA_LLM_BACKEND=openai "
                    "name the server's adapter as the agent's model"
                )

            return OpenAICompatBackend(settings)
        case other:  # settings validation makes this unreachable; kept for type checkers
            raise ValueError(f"unknown llm_backend {other!r}")
