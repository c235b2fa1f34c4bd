"""One loaded backend per distinct (model, adapter), shared by every agent that uses it.

Agents may name their own model and LoRA adapter; most use the install's default. Loading a
model costs seconds and hundreds of MB, so each is built once, on first use, and kept.

What an agent names is user input, so it never becomes a filesystem path directly: a model
is ``bundled:<name>``, a folder name under ``<data_dir>/models``, or a Hugging Face id; an
adapter is a folder name under ``<data_dir>/adapters``. ``check_model_ref`` and
``check_adapter_ref`` enforce that when an agent is saved.
"""

from __future__ import annotations

import re
import threading

from agents.llm.base import LLMBackend
from agents.llm.factory import build_llm
from agents.llm.model_source import HUB_PREFIX
from core.errors import ValidationError
from core.files import safe_join
from core.settings import Settings

_MODEL_REF = re.compile(r"^(bundled:[a-z0-9_-]+|[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?)$")
_ADAPTER_REF = re.compile(r"^[A-Za-z0-9][\w.-]*$")


def check_model_ref(value: str) -> str:
    if not _MODEL_REF.match(value) or ".." in value:
        raise ValidationError(
            f"model {value!r}: use 'bundled:smollm2', a folder name under <data_dir>/models, "
            "or a Hugging Face id such as 'org/name'"
        )
    return value


def check_adapter_ref(value: str) -> str:
    if not _ADAPTER_REF.match(value) or ".." in value:
        raise ValidationError(f"adapter {value!r}: use a folder name under <data_dir>/adapters")
    return value


class LLMPool:
    def __init__(self, settings: Settings, default: LLMBackend | None = None) -> None:
        self.settings = settings
        self._backends: dict[tuple[str | None, str | None], LLMBackend] = {}
        if default is not None:
            self._backends[(None, None)] = default
        self._lock = threading.Lock()

    def get(self, model: str | None = None, adapter: str | None = None) -> LLMBackend:
        """The backend for an agent's ``model`` and ``adapter`` (``None``: the defaults)."""
        key = (model or None, adapter or None)
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = build_llm(self._settings_for(key[0]), self._adapter_path(key[1]))
                self._backends[key] = backend
            return backend

    def _settings_for(self, model: str | None) -> Settings:
        if model is None:
            return self.settings
        check_model_ref(model)
        if self.settings.llm_backend == "openai":
            return self.settings.model_copy(update={"openai_model": model})
        if not model.startswith("bundled:"):
            local = self.settings.models_dir / model
            if local.is_dir():
                model = str(safe_join(self.settings.models_dir, model))
            elif "/" in model:  # a hub id: never a folder of the working directory
                model = f"{HUB_PREFIX}{model}"
            else:
                raise ValidationError(
                    f"model {model!r} is not installed: no folder of that name in "
                    "<data_dir>/models (a Hugging Face id looks like 'org/name')"
                )
        return self.settings.model_copy(update={"llm_model": model, "llm_gguf_file": None})

    def _adapter_path(self, adapter: str | None) -> str | None:
        if adapter is None:
            return None
        check_adapter_ref(adapter)
        return str(safe_join(self.settings.adapters_dir, adapter))
