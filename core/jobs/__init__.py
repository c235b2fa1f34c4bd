"""Durable background jobs: long work that survives a crash, shows progress and can be cancelled.

Built on dbos (durable workflows in a database) because long work in a web app fails in three
ways users notice: it is lost when the process dies, it runs twice after a restart, or it gives
no sign of life. dbos checkpoints each finished *step* in its system database, so a job killed
with ``kill -9`` resumes on restart without repeating what already took effect; only the step
that was running when the process died runs again, from its start.

How consumers write a job::

    @dataclass(frozen=True)
    class IngestDeps:                                         # what the job may use
        knowledge: KnowledgeService

    @job_kind("knowledge.ingest", deps=IngestDeps)
    def ingest(ctx: JobContext[IngestDeps], *, kb_id: str, document_id: str) -> dict:
        ctx.progress(0, 2, "parsing")
        text = ctx.step("parse", parse_file, path)            # checkpointed
        ctx.raise_if_cancelled()                              # cancel stops between steps
        ctx.step("store", ctx.deps.knowledge.store, kb_id, text, retries=3)  # with backoff
        return {"chunks": 12}

list the module in ``JOB_MODULES`` so that worker processes import it too, and hand the
dependencies over in ``container.py`` (``jobs.provide(IngestDeps(knowledge))``): a job gets
what its kind declared, never the whole app.

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

Who sees a job: the wallet that submitted it and the owner of its target (``access.py``);
``list``, ``get``, ``cancel``, ``wait`` and ``watch`` take the caller as ``principal``.

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

The parts: ``kinds`` (the registry), ``context`` (what a job is handed), ``runtime`` (the dbos
executor), ``store`` (the ``jobs`` table), ``access`` (who may see a job), ``service``.
"""

from core.jobs.access import AddressOwner, JobAccess
from core.jobs.context import JobContext
from core.jobs.kinds import (
    JOB_MODULES,
    JobCancelled,
    JobFunction,
    JobKind,
    StepFailed,
    TargetGone,
    job_kind,
    job_kinds,
    load_job_modules,
)
from core.jobs.runtime import (
    APP_NAME,
    APP_VERSION,
    MAX_RECOVERY_ATTEMPTS,
    QUEUE_NAME,
    WORKFLOW_NAME,
    worker_executor_id,
)
from core.jobs.service import LOST_AFTER_S, JobService
from core.jobs.view import FINISHED, STATUSES, JobStatus, JobView

__all__ = [
    "APP_NAME",
    "APP_VERSION",
    "FINISHED",
    "JOB_MODULES",
    "LOST_AFTER_S",
    "MAX_RECOVERY_ATTEMPTS",
    "QUEUE_NAME",
    "STATUSES",
    "WORKFLOW_NAME",
    "AddressOwner",
    "JobAccess",
    "JobCancelled",
    "JobContext",
    "JobFunction",
    "JobKind",
    "JobService",
    "JobStatus",
    "JobView",
    "StepFailed",
    "TargetGone",
    "job_kind",
    "job_kinds",
    "load_job_modules",
    "worker_executor_id",
]
