"""The dbos executor: one generic workflow that runs any job kind, launched once per process.

dbos is a process-wide singleton, so this module remembers which ``JobService`` launched it
(the *runtime owner*): the workflow hands each job to that service, and a job whose owner went
away (the executor is shutting down) is *parked* rather than failed, so it resumes on restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from dbos import DBOS, DBOSClient
from dbos._error import DBOSWorkflowConflictIDError
from sqlalchemy import create_engine

from core.settings import Settings

if TYPE_CHECKING:
    from core.jobs.service import JobService

log = logging.getLogger("core.jobs")

R = TypeVar("R")

APP_NAME = "anima"
# dbos only recovers workflows of its own application version; Anima has one generic workflow
# (below), so one fixed version lets the web process, workers and restarts agree on it.
APP_VERSION = "anima-jobs-1"
QUEUE_NAME = "anima-jobs"
WORKFLOW_NAME = "anima.job"

# A job that kills its executor again and again (out of memory, a segfaulting library) stops
# being retried after this many recoveries and shows as failed.
MAX_RECOVERY_ATTEMPTS = 20

_lock = threading.RLock()
_owner: JobService | None = None


def owns_runtime(jobs: JobService) -> bool:
    """Whether ``jobs`` runs jobs in this process now (False once its executor stops)."""
    return _owner is jobs


@DBOS.workflow(name=WORKFLOW_NAME, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
def _run_job(job_id: str) -> dict[str, Any] | None:
    jobs = _owner
    if jobs is None:
        raise parked(job_id)
    return jobs._execute(job_id)


def parked(job_id: str) -> BaseException:
    """What stops a job when its executor shuts down: dbos records no outcome for it, so the
    job stays pending and the next executor with this id (or ``recover``) resumes it."""
    return DBOSWorkflowConflictIDError(job_id)


def start(jobs: JobService, settings: Settings, executor_id: str) -> None:
    """Launch dbos for ``jobs`` (stopping another service's executor in this process first)."""
    with _lock:
        if _owner is jobs:
            return
        if _owner is not None:
            log.warning("another JobService held the dbos runtime in this process; stopping it")
            stop(_owner)
        off_event_loop(lambda: _launch(jobs, settings, executor_id))
        log.info("running jobs here as executor '%s'", executor_id)


def _launch(jobs: JobService, settings: Settings, executor_id: str) -> None:
    """Construct and launch dbos (the caller holds ``_lock``)."""
    global _owner
    url = settings.resolved_jobs_database_url
    prepare_system_database(url)
    DBOS(
        config={
            "name": APP_NAME,
            "system_database_url": url,
            "application_version": APP_VERSION,
            "executor_id": executor_id,
            "log_level": "WARNING",
        }
    )
    _owner = jobs
    try:
        DBOS.launch()
        DBOS.register_queue(
            QUEUE_NAME,
            worker_concurrency=settings.jobs.concurrency,
            polling_interval_sec=settings.jobs.poll_interval_s,
            on_conflict="always_update",
        )
    except BaseException:
        _owner = None
        DBOS.destroy()
        raise


def stop(jobs: JobService) -> None:
    """Tear dbos down if ``jobs`` launched it; its running jobs are parked, not failed."""
    global _owner
    with _lock:
        if _owner is jobs:
            _owner = None  # first: jobs cut short by the shutdown see it
            off_event_loop(DBOS.destroy)
            # Jobs parked by the shutdown end their threads with expected errors once
            # the database is gone; the next launch sets dbos's level again.
            logging.getLogger("dbos").setLevel(logging.CRITICAL)


def prepare_system_database(url: str) -> None:
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


def connect(url: str) -> DBOSClient:
    """A client that enqueues, reads and cancels workflows without being an executor."""
    prepare_system_database(url)
    return DBOSClient(system_database_url=url, application_name=APP_NAME)


def off_event_loop(fn: Callable[[], R]) -> R:
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
