"""Durable background jobs: long work that survives a crash, shows progress and can be cancelled.

Built on dbos (durable workflows in a database) because long work in a web app fails in three
ways users notice: it is lost when the process dies, it runs twice after a restart, or it gives
no sign of life. dbos checkpoints each finished *step* in its system database, so a job killed
with ``kill -9`` resumes on restart without repeating what already took effect; only the step
that was running when the process died runs again, from its start.

How consumers write a job::

    @job_kind("knowledge.ingest")
    def ingest(ctx: JobContext, *, kb_id: str, document_id: str) -> dict:
        ctx.progress(0, 2, "parsing")
        text = ctx.step("parse", parse_file, path)            # checkpointed
        ctx.raise_if_cancelled()                              # cancel stops between steps
        ctx.step("store", store, kb_id, text, retries=3)      # retried with backoff
        return {"chunks": 12}

and list their module in ``JOB_MODULES`` so that worker processes import it too.

Rules a job function must follow (dbos replays the function body after a crash):
- Anything with an outside effect (a transaction sent, a file written, rows stored) goes in a
  ``ctx.step``. Code between steps runs again on every recovery.
- A step re-runs from its start if the process died inside it, so an outside effect needs an
  idempotency key that is the same on the re-run: ``ctx.step_key("mint")`` gives
  ``"<job id>:mint"``, stable across restarts (use it as a transaction's nonce key, a file
  name, a row id...).
- Steps must be called in the same order on every run (dbos matches them by position).
- A job whose target was deleted raises ``TargetGone("reason")``: it ends as cancelled with
  that reason, never as a crash.

Where jobs run: the app's own process by default (``ANIMA_JOBS_RUN_IN_APP=true``); or
``python app.py worker`` processes on any number of machines sharing one PostgreSQL database,
each with its own executor id, while the web process only enqueues. dbos is a process-wide
singleton, so the executor is launched lazily (first submit, app start-up when jobs are
pending, or worker start) and torn down by ``JobService.close()``; build, use, close and build
again works in one process (the tests do exactly that).

Storage: dbos keeps its own tables (workflow status, step checkpoints, queue) in the jobs
database (``ANIMA_JOBS_DATABASE_URL``; default SQLite ``<data_dir>/jobs.sqlite``, or
``ANIMA_DATABASE_URL`` when that is PostgreSQL, in the ``dbos`` schema). Anima's own view of a
job (kind, owner, target, progress, result) is the ``jobs`` table in the app database; the job
id is the dbos workflow id.

Deviations from the contract in CONTRACTS.md (additive only): ``ctx.step`` also takes
``backoff_s`` (first retry delay, doubled each retry); ``retries`` counts retries after the
first attempt; ``JobContext`` has ``job_id`` and ``step_key(name)``; ``JobView`` also carries
``executor_id``; ``list`` also filters by ``owner`` and takes ``limit``; ``wait`` raises
``TimeoutError`` when the job is not finished in time; ``cancel_for_target`` cancels a deleted
target's jobs; ``start_executor`` / ``recover`` / ``watch`` serve the app, the worker command
and the SSE route.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from dbos import DBOS, DBOSClient, StepOptions
from dbos._error import (
    DBOSMaxStepRetriesExceeded,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from dbos._utils import INTERNAL_QUEUE_NAME
from pydantic import BaseModel
from sqlalchemy import create_engine, select, update
from sqlalchemy.exc import IntegrityError

from core.db import Database, UTCDateTime
from core.errors import ConflictError, NotFoundError, ValidationError
from core.job_records import JobRecord, utcnow
from core.settings import Settings

if TYPE_CHECKING:
    from container import Services

log = logging.getLogger(__name__)

# Modules whose import registers ``@job_kind`` functions. Consumers add theirs here
# ("knowledge.jobs", "chain.jobs", "agents.finetune_jobs") so separate workers import them.
JOB_MODULES: tuple[str, ...] = ("knowledge.jobs", "chain.jobs", "agents.finetune.jobs")

APP_NAME = "anima"
# dbos only recovers workflows of its own application version; Anima has one generic workflow
# (below), so one fixed version lets the web process, workers and restarts agree on it.
APP_VERSION = "anima-jobs-1"
QUEUE_NAME = "anima-jobs"
WORKFLOW_NAME = "anima.job"

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")

P = ParamSpec("P")
R = TypeVar("R")
JobFunction = Callable[..., dict[str, Any] | None]

_KINDS: dict[str, JobFunction] = {}


class TargetGone(Exception):
    """Raised by a job whose target (agent, knowledge base) was deleted: ends it as cancelled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobCancelled(Exception):
    """Raised by ``JobContext.raise_if_cancelled`` once the job was cancelled."""


class StepFailed(Exception):
    """A step kept failing after its retries; the message names the step and the last error."""


def job_kind(name: str) -> Callable[[JobFunction], JobFunction]:
    """Register ``fn(ctx, **params)`` as the job kind ``name`` (at import time)."""
    if not name or len(name) > 100:
        raise ValueError("a job kind needs a name of 1-100 characters")

    def register(fn: JobFunction) -> JobFunction:
        existing = _KINDS.get(name)
        if existing is not None and existing is not fn:
            same = (existing.__module__, existing.__qualname__) == (fn.__module__, fn.__qualname__)
            if not same:
                raise ValueError(f"job kind '{name}' is already registered by {existing!r}")
        _KINDS[name] = fn
        return fn

    return register


def job_kinds() -> list[str]:
    return sorted(_KINDS)


def load_job_modules(settings: Settings) -> None:
    """Import every module that registers job kinds (idempotent)."""
    extra = [m.strip() for m in settings.jobs_extra_modules.split(",") if m.strip()]
    for module in (*JOB_MODULES, *extra):
        importlib.import_module(module)


class JobView(BaseModel):
    """What the API, the UI and ``wait`` show about one job."""

    id: str
    kind: str
    owner: str | None
    target_type: str | None
    target_id: str | None
    status: JobStatus
    progress_done: int
    progress_total: int
    message: str
    result: dict[str, Any] | None
    error: str | None
    executor_id: str | None
    created_at: UTCDateTime
    started_at: UTCDateTime | None
    finished_at: UTCDateTime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def of(cls, record: JobRecord) -> JobView:
        return cls(
            id=record.id,
            kind=record.kind,
            owner=record.owner,
            target_type=record.target_type,
            target_id=record.target_id,
            status=record.status,  # type: ignore[arg-type]
            progress_done=record.progress_done,
            progress_total=record.progress_total,
            message=record.message,
            result=record.result,
            error=record.error,
            executor_id=record.executor_id,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )


class JobContext:
    """Handed to a job function: progress, durable steps, cancellation and the services."""

    def __init__(self, jobs: JobService, job_id: str, kind: str) -> None:
        self._jobs = jobs
        self.job_id = job_id
        self.kind = kind

    @property
    def services(self) -> Services:
        """The ``Services`` container of the process running the job."""
        if self._jobs.services is None:
            raise RuntimeError("this JobService is not attached to a Services container")
        return self._jobs.services

    def progress(self, done: int, total: int, message: str = "") -> None:
        """Record progress (persisted: shown by the API, the UI and the SSE stream)."""
        self._jobs._write_progress(self.job_id, int(done), int(total), message)

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
        if _runtime_owner is not self._jobs:
            raise _parked(self.job_id)
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
        if self._jobs._status(self.job_id) == "cancelled":
            raise JobCancelled(f"job {self.job_id} was cancelled")


# ----------------------------------------------------------------------------------------------
# The one dbos workflow: runs any registered job kind. A process-wide runtime (dbos is a
# singleton) remembers which JobService launched it, so the workflow finds its services.

_runtime_lock = threading.RLock()
_runtime_owner: JobService | None = None


# A job that kills its executor again and again (out of memory, a segfaulting library) stops
# being retried after this many recoveries and shows as failed.
MAX_RECOVERY_ATTEMPTS = 20
# An unfinished job that dbos has never heard of this long after it was written was lost
# between the two writes of ``submit`` (the process died); reading it enqueues it again.
LOST_AFTER_S = 30.0


@DBOS.workflow(name=WORKFLOW_NAME, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
def _run_job(job_id: str) -> dict[str, Any] | None:
    jobs = _runtime_owner
    if jobs is None:
        raise _parked(job_id)
    return jobs._execute(job_id)


def _parked(job_id: str) -> BaseException:
    """What stops a job when its executor shuts down: dbos records no outcome for it, so the
    job stays pending and the next executor with this id (or ``recover``) resumes it."""
    return DBOSWorkflowConflictIDError(job_id)


class JobService:
    """Submit, inspect, cancel and wait for jobs; runs them when this process is an executor."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.services: Services | None = None
        self._client: DBOSClient | None = None
        self._client_lock = threading.Lock()
        self._executor_id: str | None = None

    # -- submitting and reading ------------------------------------------------------------

    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        owner: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobView:
        """Queue a job; the same ``idempotency_key`` twice returns the first job."""
        load_job_modules(self.settings)
        if kind not in _KINDS:
            known = ", ".join(job_kinds()) or "none"
            raise ValidationError(f"unknown job kind '{kind}' (known: {known})")
        params = dict(params or {})
        try:
            json.dumps(params)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"job params must be JSON-serialisable: {exc}") from exc
        if idempotency_key is not None:
            existing = self._by_key(idempotency_key)
            if existing is not None:
                return existing
        record = JobRecord(
            id=uuid.uuid4().hex,
            kind=kind,
            owner=owner,
            target_type=target_type,
            target_id=target_id,
            status="queued",
            params=params,
            progress_done=0,
            progress_total=0,
            message="queued",
            idempotency_key=idempotency_key,
        )
        try:
            with self.db.session() as session:
                session.add(record)
        except IntegrityError:
            existing = self._by_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return existing
        try:
            if self.settings.jobs_run_in_app:
                self.start_executor()
            self._enqueue(record.id)
        except Exception as exc:
            self._finish(record.id, "failed", error=f"could not enqueue the job: {exc}")
            raise
        return JobView.of(record)

    def get(self, job_id: str) -> JobView:
        with self.db.session() as session:
            record = session.get(JobRecord, job_id)
            if record is None:
                raise NotFoundError(f"no job with id '{job_id}'")
        if record.status not in FINISHED:
            self._reconcile([record])
        return JobView.of(record)

    def list(
        self,
        kind: str | None = None,
        status: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        owner: str | None = None,
        limit: int = 100,
    ) -> list[JobView]:
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
        query = select(JobRecord).order_by(JobRecord.created_at.desc()).limit(max(1, limit))
        for column, value in (
            (JobRecord.kind, kind),
            (JobRecord.status, status),
            (JobRecord.target_type, target_type),
            (JobRecord.target_id, target_id),
            (JobRecord.owner, owner),
        ):
            if value is not None:
                query = query.where(column == value)
        with self.db.session() as session:
            records = list(session.scalars(query))
        pending = [r for r in records if r.status not in FINISHED]
        if pending:
            self._reconcile(pending)
        return [JobView.of(r) for r in records]

    def cancel(self, job_id: str, reason: str = "cancelled by user") -> JobView:
        """Cancel a queued or running job; a running step finishes, the next one never starts."""
        view = self.get(job_id)
        if view.finished:
            raise ConflictError(f"job '{job_id}' already {view.status}; it cannot be cancelled")
        if not self._finish(job_id, "cancelled", message=reason):
            view = self.get(job_id)
            raise ConflictError(f"job '{job_id}' already {view.status}; it cannot be cancelled")
        client = self._dbos_client()
        _off_event_loop(lambda: client.cancel_workflow(job_id))
        return self.get(job_id)

    def cancel_for_target(self, target_type: str, target_id: str, reason: str) -> list[str]:
        """Cancel every unfinished job working on a target (call it when deleting the target)."""
        cancelled = []
        for view in self.list(target_type=target_type, target_id=target_id, limit=500):
            if not view.finished:
                try:
                    self.cancel(view.id, reason=reason)
                    cancelled.append(view.id)
                except ConflictError:  # finished meanwhile
                    pass
        return cancelled

    def wait(self, job_id: str, timeout: float = 60.0, poll_s: float = 0.05) -> JobView:
        """Block until the job is finished (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.get(job_id)
            if view.finished:
                return view
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} still {view.status} after {timeout:.0f} s ({view.message})"
                )
            time.sleep(poll_s)

    def watch(self, job_id: str, poll_s: float = 0.25) -> Iterator[JobView]:
        """Yield the job each time it changes, ending with its finished state (for SSE)."""
        last: dict[str, Any] | None = None
        while True:
            view = self.get(job_id)
            state = view.model_dump(mode="json")
            if state != last:
                last = state
                yield view
            if view.finished:
                return
            time.sleep(poll_s)

    # -- executing ---------------------------------------------------------------------------

    @property
    def executor_id(self) -> str:
        if self._executor_id is None:
            default = "local" if self.settings.jobs_run_in_app else worker_executor_id()
            self._executor_id = self.settings.jobs_executor_id or default
        return self._executor_id

    @property
    def executing(self) -> bool:
        return _runtime_owner is self

    def start_executor(self, executor_id: str | None = None) -> None:
        """Make this process run jobs (launch dbos); recovers this executor's pending jobs."""
        global _runtime_owner
        with _runtime_lock:
            if _runtime_owner is self:
                return
            if _runtime_owner is not None:
                log.warning("another JobService held the dbos runtime in this process; stopping it")
                _runtime_owner._stop_executor()
            if executor_id is not None:
                self._executor_id = executor_id
            load_job_modules(self.settings)
            _off_event_loop(self._launch)
            log.info("running jobs here as executor '%s'", self.executor_id)

    def _launch(self) -> None:
        """Construct and launch dbos (the caller holds ``_runtime_lock``)."""
        global _runtime_owner
        _prepare_system_database(self.settings.resolved_jobs_database_url)
        DBOS(
            config={
                "name": APP_NAME,
                "system_database_url": self.settings.resolved_jobs_database_url,
                "application_version": APP_VERSION,
                "executor_id": self.executor_id,
                "log_level": "WARNING",
            }
        )
        _runtime_owner = self
        try:
            DBOS.launch()
            DBOS.register_queue(
                QUEUE_NAME,
                worker_concurrency=self.settings.jobs_concurrency,
                polling_interval_sec=self.settings.jobs_poll_interval_s,
                on_conflict="always_update",
            )
        except BaseException:
            _runtime_owner = None
            DBOS.destroy()
            raise

    def _stop_executor(self) -> None:
        global _runtime_owner
        with _runtime_lock:
            if _runtime_owner is self:
                _runtime_owner = None  # first: jobs cut short by the shutdown see it
                _off_event_loop(DBOS.destroy)
                # Jobs parked by the shutdown end their threads with expected errors once
                # the database is gone; the next launch sets dbos's level again.
                logging.getLogger("dbos").setLevel(logging.CRITICAL)

    def has_unfinished_jobs(self) -> bool:
        with self.db.session() as session:
            query = select(JobRecord.id).where(JobRecord.status.in_(("queued", "running")))
            return session.scalars(query.limit(1)).first() is not None

    def recover(self, executor_ids: list[str]) -> list[str]:
        """Hand the pending jobs of dead executors back to the queue; returns their ids.

        Any live executor (the app or a worker) then picks them up; steps they finished are
        not run again. Safe to repeat: a job another executor already took is left alone.
        """
        client = self._dbos_client()
        sys_db = client._sys_db  # dbos 3.4 has no public client call for this
        recovered: list[str] = []
        for executor in executor_ids:
            for pending in sys_db.get_pending_workflows(executor, APP_VERSION):
                if sys_db.reenqueue_for_recovery(
                    pending.workflow_id, [executor], INTERNAL_QUEUE_NAME
                ):
                    recovered.append(pending.workflow_id)
        with self.db.session() as session:
            session.execute(
                update(JobRecord)
                .where(JobRecord.id.in_(recovered), JobRecord.status == "running")
                .values(status="queued", message="recovered; waiting for a worker")
            )
        return recovered

    def close(self) -> None:
        self._stop_executor()
        with self._client_lock:
            if self._client is not None:
                self._client.destroy()
                self._client = None

    # -- inside the workflow ----------------------------------------------------------------

    def _execute(self, job_id: str) -> dict[str, Any] | None:
        with self.db.session() as session:
            record = session.get(JobRecord, job_id)
            if record is None or record.status in FINISHED:
                return None
            kind, params = record.kind, dict(record.params or {})
            session.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.status.in_(("queued", "running")))
                .values(
                    status="running",
                    started_at=record.started_at or utcnow(),
                    executor_id=self.executor_id,
                    message="running" if record.status == "queued" else record.message,
                    updated_at=utcnow(),
                )
            )
        fn = _KINDS.get(kind)
        if fn is None:
            self._finish(job_id, "failed", error=f"unknown job kind '{kind}' in this process")
            return None
        try:
            result = fn(JobContext(self, job_id, kind), **params)
            if result is not None and not isinstance(result, dict):
                raise TypeError(f"a job returns a dict or None, not {type(result).__name__}")
            json.dumps(result)
        except TargetGone as exc:
            self._finish(job_id, "cancelled", message=exc.reason)
            return None
        except (JobCancelled, DBOSWorkflowCancelledError):
            self._finish(job_id, "cancelled", message="cancelled")
            raise
        except Exception as exc:
            if _runtime_owner is not self:
                # The executor is shutting down under the job: it has not failed; parked, it
                # stays pending and resumes on restart.
                log.info("job %s interrupted by shutdown; it resumes on restart", job_id)
                raise _parked(job_id) from exc
            self._finish(job_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        self._finish(job_id, "succeeded", result=result, message="done")
        return result

    def _write_progress(self, job_id: str, done: int, total: int, message: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.status == "running")
                .values(
                    progress_done=max(0, done),
                    progress_total=max(0, total),
                    message=message[:2000],
                    updated_at=utcnow(),
                )
            )

    def _finish(
        self,
        job_id: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        message: str | None = None,
    ) -> bool:
        """Move an unfinished job to a finished status; False if it was already finished."""
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "updated_at": utcnow()}
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = error[:4000]
            values["message"] = message or "failed"
        elif message is not None:
            values["message"] = message
        with self.db.session() as session:
            done = session.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.status.in_(("queued", "running")))
                .values(**values)
            )
            return bool(done.rowcount)

    def _status(self, job_id: str) -> str | None:
        with self.db.session() as session:
            return session.scalar(select(JobRecord.status).where(JobRecord.id == job_id))

    def _by_key(self, key: str) -> JobView | None:
        with self.db.session() as session:
            record = session.scalar(select(JobRecord).where(JobRecord.idempotency_key == key))
        return JobView.of(record) if record else None

    def _reconcile(self, records: list[JobRecord]) -> None:
        """Fold in what only dbos knows about unfinished jobs.

        A job that crashed its executors too often, or was cancelled through dbos's own tools,
        ends here. A job whose process died between writing its row and enqueueing it is
        enqueued again (the job id is the workflow id, so this can never make two).
        """
        try:
            client = self._dbos_client()
            ids = [r.id for r in records]
            statuses = _off_event_loop(lambda: client.list_workflows(workflow_ids=ids))
        except Exception as exc:  # the view stays as stored; the next read tries again
            log.debug("could not read dbos workflow status: %s", exc)
            return
        by_id = {s.workflow_id: s for s in statuses}
        for record in records:
            status = by_id.get(record.id)
            if status is None:
                if _age_s(record.created_at) > LOST_AFTER_S:
                    log.warning("job %s was never enqueued; enqueueing it now", record.id)
                    self._enqueue(record.id)
                continue
            if status.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED":
                self._finish(record.id, "failed", error="the job crashed its executor too often")
            elif status.status == "ERROR":
                self._finish(record.id, "failed", error=str(status.error or "failed"))
            elif status.status == "CANCELLED":
                self._finish(record.id, "cancelled", message="cancelled")
            else:
                continue
            with self.db.session() as session:
                fresh = session.get(JobRecord, record.id)
                if fresh is not None:
                    record.status, record.message, record.error = (
                        fresh.status,
                        fresh.message,
                        fresh.error,
                    )
                    record.finished_at = fresh.finished_at

    def _enqueue(self, job_id: str) -> None:
        options: Any = {
            "workflow_name": WORKFLOW_NAME,
            "queue_name": QUEUE_NAME,
            "workflow_id": job_id,
            "app_version": APP_VERSION,
        }
        client = self._dbos_client()
        _off_event_loop(lambda: client.enqueue(options, job_id))

    def _dbos_client(self) -> DBOSClient:
        with self._client_lock:
            if self._client is None:
                url = self.settings.resolved_jobs_database_url
                self._client = _off_event_loop(lambda: _connect(url))
            return self._client


def _age_s(moment: datetime) -> float:
    if moment.tzinfo is None:  # SQLite hands back naive UTC datetimes
        moment = moment.replace(tzinfo=UTC)
    return (utcnow() - moment).total_seconds()


def _prepare_system_database(url: str) -> None:
    """Create dbos's tables if no executor has yet; put a SQLite file in WAL mode.

    dbos leaves SQLite in rollback-journal mode, where a writer blocks every reader; WAL lets
    the API read progress while a job checkpoints, and the mode sticks to the file.
    """
    DBOS.migrate(url)
    if url.startswith("sqlite"):
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        finally:
            engine.dispose()


def _connect(url: str) -> DBOSClient:
    _prepare_system_database(url)
    return DBOSClient(system_database_url=url, application_name=APP_NAME)


def _off_event_loop(fn: Callable[[], R]) -> R:
    """Run a blocking dbos call; in a thread of its own when this one runs an event loop.

    dbos refuses (or warns about) synchronous calls from a thread with a running asyncio loop,
    which is where FastAPI's lifespan, ``async def`` routes and Playwright tests call us.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="anima-jobs") as pool:
        return pool.submit(fn).result()


def worker_executor_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
