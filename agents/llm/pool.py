"""One loaded backend per distinct (model, adapter), shared by every agent that uses it.

Agents may name their own model and LoRA adapter; most use the install's default. Loading a
model costs seconds and hundreds of MB, so each is built once, on first use, and kept.

What an agent names is user input, so it never becomes a filesystem path directly: a model
is ``bundled:<name>``, a folder name under ``<data_dir>/models``, a Hugging Face id, or a model
of a connection the operator added (``conn:<connection>/<model id>``, resolved by
``connections``: ``agents.model_connections``); an adapter is a folder name under
``<data_dir>/adapters``. ``check_model_ref`` and ``check_adapter_ref`` enforce that when an
agent is saved.

The default model (an agent with no ``model``) is the connections' default when one is set,
asked on every request, so picking another on the Models screen takes effect without a
restart; otherwise the settings' (``ANIMA_LLM_MODEL``).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Protocol

from agents.llm.adapters import check_adapter_base, model_ref
from agents.llm.base import SchedulableBackend
from agents.llm.connections import CONN_REF, ResolvedModel
from agents.llm.factory import backend_traits, build_llm
from agents.llm.model_source import HUB_PREFIX
from agents.llm.scheduler import ScheduledBackend, Scheduler
from core.errors import ValidationError
from core.files import safe_join
from core.settings import Settings

log = logging.getLogger(__name__)

_MODEL_REF = re.compile(r"^(bundled:[a-z0-9_-]+|[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?)$")
_ADAPTER_REF = re.compile(r"^[A-Za-z0-9][\w.-]*$")


def check_model_ref(value: str) -> str:
    if CONN_REF.match(value):
        return value
    if not _MODEL_REF.match(value) or ".." in value:
        raise ValidationError(
            f"model {value!r}: use 'bundled:smollm2', a folder name under <data_dir>/models, "
            "a Hugging Face id such as 'org/name', or a connection's model 'conn:<name>/<model>'"
        )
    return value


class ModelResolver(Protocol):
    """What the pool asks the model connections (``agents.model_connections``)."""

    def default_model(self) -> str | None:
        """The default model ref chosen at run time; None: the settings' default."""
        ...

    def resolve(self, ref: str) -> ResolvedModel:
        """Backend settings for a ``conn:`` ref (refused when it names nothing known)."""
        ...


def check_adapter_ref(value: str) -> str:
    if not _ADAPTER_REF.match(value) or ".." in value:
        raise ValidationError(f"adapter {value!r}: use a folder name under <data_dir>/adapters")
    return value


class LLMPool:
    """Backends by (model, adapter), every one behind the shared ``Scheduler``.

    The llama.cpp engine holds one copy of each base model for all of its adapters
    (``_engines``); at most ``llm_max_models`` base models stay loaded: loading another
    unloads the least recently used one that is idle.
    """

    def __init__(
        self,
        settings: Settings,
        default: SchedulableBackend | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.settings = settings
        self.traits = backend_traits(settings)
        self.scheduler = scheduler or Scheduler(
            max_queue=settings.llm.queue_size,
            request_timeout_s=settings.llm.request_timeout_s,
            stream_buffer=settings.llm.stream_buffer,
            scheduling=settings.llm.scheduling,
            tenant_queue=settings.llm.tenant_queue_size,
        )
        self._backends: dict[tuple[str | None, str | None], ScheduledBackend] = {}
        self._engines: dict[Any, Any] = {}
        self._used: dict[str | None, int] = {}  # base model -> last use (a counter)
        self._clock = 0
        if default is not None:
            self._backends[(None, None)] = ScheduledBackend(default, self.scheduler)
        self._lock = threading.Lock()
        # Model connections and the run-time default; ``container.build_services`` sets it.
        self.connections: ModelResolver | None = None
        # Connection refs' backends: the key a resolved ref is cached under -> its settings.
        self._resolved: dict[str, ResolvedModel] = {}

    def get(self, model: str | None = None, adapter: str | None = None) -> ScheduledBackend:
        """The backend for an agent's ``model`` and ``adapter`` (``None``: the defaults)."""
        model = model or None
        if model is None and self.connections is not None:
            model = self.connections.default_model()
        if model is not None and CONN_REF.match(model):
            if self.connections is None:
                raise ValidationError(f"model {model!r}: model connections are not available")
            resolved = self.connections.resolve(model)
            model = resolved.key  # changes with the connection: never a stale backend
        else:
            resolved = None
        key = (model, adapter or None)
        with self._lock:
            if resolved is not None:
                self._resolved[resolved.key] = resolved
            backend = self._backends.get(key)
            if backend is None:
                built = build_llm(
                    self._settings_for(key[0]),
                    self._adapter_path(key[1], key[0]),
                    adapter_name=key[1],
                    engines=self._engines,
                )
                backend = self._backends[key] = ScheduledBackend(built, self.scheduler)
            self._clock += 1
            self._used[key[0]] = self._clock
            self._evict_locked(key[0])
            return backend

    def _evict_locked(self, current: str | None) -> None:
        """Unload idle base models beyond ``llm_max_models``, least recently used first."""
        loaded = {k[0] for k, b in self._backends.items() if b.is_loaded and self._in_process(k[0])}
        if self._in_process(current):  # a remote model holds no memory here
            loaded.add(current)
        stats = self.scheduler.stats()
        if len(loaded) <= self.settings.llm.max_models or stats["running"] + stats["queued"] > 0:
            return  # never pull a model from under a request
        for model in sorted(loaded - {current}, key=lambda m: self._used.get(m, 0)):
            if len(loaded) <= self.settings.llm.max_models:
                break
            for (m, _), scheduled in self._backends.items():
                if m == model:
                    _unload(scheduled.backend)
            loaded.discard(model)
            log.info("unloaded model %s (ANIMA_LLM_MAX_MODELS)", model or "default")

    def forget(self, connection: str) -> None:
        """Drop the backends built from connection ``connection`` (it changed or went); a
        local one's model is unloaded when no request runs."""
        prefix = f"conn:{connection}/"
        with self._lock:
            gone = [k for k in self._backends if k[0] and k[0].startswith(prefix)]
            stats = self.scheduler.stats()
            idle = stats["running"] + stats["queued"] == 0
            for key in gone:
                scheduled = self._backends.pop(key)
                resolved = self._resolved.pop(key[0] or "", None)
                if idle and resolved is not None and resolved.in_process:
                    _unload(scheduled.backend)
                self._used.pop(key[0], None)

    def _in_process(self, model: str | None) -> bool:
        resolved = self._resolved.get(model or "")
        return resolved.in_process if resolved is not None else self.traits.in_process

    def _settings_for(self, model: str | None) -> Settings:
        if model is None:
            return self.settings
        resolved = self._resolved.get(model)
        if resolved is not None:
            return resolved.settings
        check_model_ref(model)
        if not self.traits.in_process:  # the name the remote server serves
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

    def _adapter_path(self, adapter: str | None, model: str | None = None) -> str | None:
        """The adapter's folder; an adapter trained on another base model is refused here,
        before anything loads (a remote server checks its own adapters)."""
        if adapter is None:
            return None
        check_adapter_ref(adapter)
        path = safe_join(self.settings.adapters_dir, adapter)
        if self._in_process(model):
            stable = model.split("#", 1)[0] if model else model  # a connection's key: its ref
            ref = model_ref(self.settings, stable)
            check_adapter_base(path, ref, self._settings_for(model))
        return str(path)


def _unload(backend: Any) -> None:
    """Free what a backend holds (its engine, or the transformers model of a fallback)."""
    for target in (getattr(backend, "engine", None), getattr(backend, "fallback", None), backend):
        unload = getattr(target, "unload", None)
        if callable(unload):
            unload()
