"""The registry of job kinds: ``@job_kind`` functions, what each needs, and the modules that
define them (imported by the app and by every worker, so any process can run any kind).

A kind names the type of its dependencies (``deps=``) instead of reaching into the app's
container: ``container.py`` hands each type's one instance to ``JobService.provide``, and the
job reads it as ``ctx.deps``. So a job can only touch what it declared.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.settings import Settings

# Modules whose import registers ``@job_kind`` functions, so separate workers import them too.
JOB_MODULES: tuple[str, ...] = (
    "knowledge.jobs",
    "chain.jobs",
    "agents.finetune.jobs",
    "agents.memory",
    "economy.jobs",
)

JobFunction = Callable[..., dict[str, Any] | None]


@dataclass(frozen=True)
class JobKind:
    name: str
    fn: JobFunction
    # The type of ``ctx.deps`` (``None``: the kind needs nothing but its context).
    deps: type | None


_KINDS: dict[str, JobKind] = {}


class TargetGone(Exception):
    """Raised by a job whose target (agent, knowledge base) was deleted: ends it as cancelled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobCancelled(Exception):
    """Raised by ``JobContext.raise_if_cancelled`` once the job was cancelled."""


class StepFailed(Exception):
    """A step kept failing after its retries; the message names the step and the last error."""


def job_kind(name: str, *, deps: type | None = None) -> Callable[[JobFunction], JobFunction]:
    """Register ``fn(ctx, **params)`` as the job kind ``name`` (at import time).

    ``deps`` is the type of the object the job reads as ``ctx.deps``; the process that runs
    the job must have been given one (``JobService.provide``).
    """
    if not name or len(name) > 100:
        raise ValueError("a job kind needs a name of 1-100 characters")

    def register(fn: JobFunction) -> JobFunction:
        existing = _KINDS.get(name)
        if existing is not None and existing.fn is not fn:
            same = (existing.fn.__module__, existing.fn.__qualname__) == (
                fn.__module__,
                fn.__qualname__,
            )
            if not same:
                raise ValueError(f"job kind '{name}' is already registered by {existing.fn!r}")
        _KINDS[name] = JobKind(name=name, fn=fn, deps=deps)
        return fn

    return register


def job_kinds() -> list[str]:
    return sorted(_KINDS)


def kind_of(name: str) -> JobKind | None:
    return _KINDS.get(name)


def load_job_modules(settings: Settings) -> None:
    """Import every module that registers job kinds (idempotent)."""
    extra = [m.strip() for m in settings.jobs.extra_modules.split(",") if m.strip()]
    for module in (*JOB_MODULES, *extra):
        importlib.import_module(module)
