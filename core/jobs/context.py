"""What a running job is handed: progress, durable steps, cancellation and its dependencies."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from dbos import DBOS, StepOptions
from dbos._error import DBOSMaxStepRetriesExceeded

from core.jobs import runtime
from core.jobs.kinds import JobCancelled, StepFailed

if TYPE_CHECKING:
    from core.jobs.service import JobService

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D")


class JobContext(Generic[D]):
    """Handed to a job function. ``deps`` is the object its kind declared (``deps=``)."""

    def __init__(self, jobs: JobService, job_id: str, kind: str, deps: D) -> None:
        self._jobs = jobs
        self.job_id = job_id
        self.kind = kind
        self.deps = deps

    @property
    def executor_id(self) -> str:
        """The executor (the app, or a worker) running this job."""
        return self._jobs.executor_id

    @property
    def shutting_down(self) -> bool:
        """True once this process's executor stops: an error now is an interruption (the job
        resumes on restart), not a failure."""
        return not runtime.owns_runtime(self._jobs)

    def progress(self, done: int, total: int, message: str = "") -> None:
        """Record progress (persisted: shown by the API, the UI and the SSE stream)."""
        self._jobs.store.write_progress(self.job_id, int(done), int(total), message)

    def step(
        self,
        name: str,
        fn: Callable[P, R],
        *args: Any,
        retries: int = 0,
        backoff_s: float = 1.0,
        **kwargs: Any,
    ) -> R:
        """Run ``fn(*args, **kwargs)`` as a durable step; a finished step is never run again.

        ``retries`` extra attempts follow a failure, after ``backoff_s`` seconds, doubling each
        time. When they are spent the job fails with the last error.
        """
        if self.shutting_down:
            raise runtime.parked(self.job_id)
        options: StepOptions = {
            "name": name,
            "retries_allowed": retries > 0,
            "max_attempts": retries + 1,
            "interval_seconds": backoff_s,
            "backoff_rate": 2.0,
        }
        try:
            return DBOS.run_step(options, fn, *args, **kwargs)  # type: ignore[arg-type]
        except DBOSMaxStepRetriesExceeded as exc:
            last = exc.errors[-1] if exc.errors else exc
            raise StepFailed(
                f"step '{name}' failed {retries + 1} times; last error: "
                f"{type(last).__name__}: {last}"
            ) from last

    def step_key(self, name: str) -> str:
        """An idempotency key for a step's outside effect, the same on every re-run."""
        return f"{self.job_id}:{name}"

    def raise_if_cancelled(self) -> None:
        if self._jobs.store.status(self.job_id) == "cancelled":
            raise JobCancelled(f"job {self.job_id} was cancelled")
