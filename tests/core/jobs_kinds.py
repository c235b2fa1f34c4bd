"""Job kinds used by the job tests; imported by worker subprocesses via ANIMA_JOBS_EXTRA_MODULES.

Each step appends a line to a file named by the test, so a test can see which steps ran and
how often, even across a killed and restarted process.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.service import AgentService
from core.jobs import JobContext, TargetGone, job_kind

# Gates for ``test.held``, by name: in-process only (a worker subprocess has its own).
GATES: dict[str, threading.Event] = {}


def _log(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _slow_step(path: str, name: str, seconds: float) -> str:
    _log(path, f"start {name}")
    time.sleep(seconds)
    _log(path, f"end {name}")
    return name


@job_kind("test.steps")
def steps(ctx: JobContext, *, log: str, n: int = 3, seconds: float = 0.0) -> dict[str, Any]:
    """``n`` logged steps of ``seconds`` each, with progress after every step."""
    ctx.progress(0, n, "starting")
    for i in range(n):
        ctx.raise_if_cancelled()
        ctx.step(f"s{i}", _slow_step, log, f"s{i}", seconds)
        ctx.progress(i + 1, n, f"step {i + 1} of {n}")
    return {"steps": n, "pid": os.getpid(), "executor": ctx.executor_id}


@job_kind("test.flaky")
def flaky(ctx: JobContext, *, log: str, fail_times: int, retries: int) -> dict[str, Any]:
    """A step that fails ``fail_times`` times before it succeeds."""

    def attempt() -> int:
        tries = Path(log).read_text().count("\n") if Path(log).exists() else 0
        _log(log, f"attempt {time.monotonic():.3f}")
        if tries < fail_times:
            raise ConnectionError(f"flaky service down (attempt {tries + 1})")
        return tries + 1

    return {"attempts": ctx.step("call", attempt, retries=retries, backoff_s=0.2)}


@dataclass(frozen=True)
class TargetDeps:
    """What ``test.target`` uses; a test hands it over with ``services.jobs.provide``."""

    agents: AgentService


@job_kind("test.target", deps=TargetDeps)
def needs_target(ctx: JobContext[TargetDeps], *, agent_id: str) -> dict[str, Any]:
    """Works on an agent; ends as cancelled when the agent is gone."""
    ctx.step("look", lambda: None)
    if not any(a.id == agent_id for a in ctx.deps.agents.list_agents()):
        raise TargetGone(f"agent {agent_id} was deleted")
    return {"agent": agent_id}


def gate(name: str) -> threading.Event:
    """A closed gate for ``test.held`` jobs; the test opens it with ``set()``."""
    GATES[name] = threading.Event()
    return GATES[name]


def _held_step(path: str, name: str, gate_name: str | None) -> str:
    _log(path, f"start {name}")
    if gate_name is not None and not GATES[gate_name].wait(timeout=120):
        raise TimeoutError(f"gate {gate_name} was never opened")
    _log(path, f"end {name}")
    return name


@job_kind("test.held")
def held(ctx: JobContext, *, log: str, n: int, hold_at: int, gate: str) -> dict[str, Any]:
    """``n`` logged steps; step ``hold_at`` waits until the test opens the gate named ``gate``.

    The last line of the log, ``stopped``, says the job function has returned or raised: from
    then on no step of this run can start.
    """
    try:
        ctx.progress(0, n, "starting")
        for i in range(n):
            ctx.raise_if_cancelled()
            ctx.step(f"s{i}", _held_step, log, f"s{i}", gate if i == hold_at else None)
            ctx.progress(i + 1, n, f"step {i + 1} of {n}")
        return {"steps": n}
    finally:
        _log(log, "stopped")
