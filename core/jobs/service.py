"""``JobService``: submit, list, inspect, cancel and wait for jobs, checked against the caller;
and, in a process that runs jobs, execute them with the dependencies their kind declared."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dbos import DBOSClient
from dbos._error import DBOSWorkflowCancelledError
from dbos._utils import INTERNAL_QUEUE_NAME
from sqlalchemy.exc import IntegrityError

from core.db import Database
from core.errors import ConflictError, ValidationError
from core.job_records import JobRecord, utcnow
from core.jobs import runtime
from core.jobs.access import AddressOwner, JobAccess
from core.jobs.context import JobContext
from core.jobs.kinds import (
    JobCancelled,
    JobKind,
    TargetGone,
    job_kinds,
    kind_of,
    load_job_modules,
)
from core.jobs.store import JobStore
from core.jobs.view import FINISHED, STATUSES, JobView
from core.principal import SYSTEM, OwnerCheck, Principal
from core.settings import Settings

log = logging.getLogger("core.jobs")

# An unfinished job that dbos has never heard of this long after it was written was lost
# between the two writes of ``submit`` (the process died); reading it enqueues it again.
LOST_AFTER_S = 30.0


class JobService:
    """Submit, inspect, cancel and wait for jobs; runs them when this process is an executor.

    Reads and cancels take the caller (``principal``) and check it (``core.jobs.access``);
    the app itself passes ``SYSTEM``. ``submit`` and ``cancel_for_target`` take no principal:
    only services call them, after their own owner check of the target.
    """

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.store = JobStore(db)
        self.access = JobAccess()
        self._deps: dict[type, object] = {}
        self._client: DBOSClient | None = None
        self._executor_id: str | None = None
        self._client_lock = threading.Lock()

    # -- wiring (container.py) ---------------------------------------------------------------

    def use_owner_check(
        self, owners: OwnerCheck, address_owners: dict[str, AddressOwner] | None = None
    ) -> None:
        """Set who may see a job's target: agents through ``owners``; other target types
        through ``address_owners`` (target type -> the wallet owning a target id)."""
        self.access.owners = owners
        self.access.address_owners = dict(address_owners or {})

    def provide(self, *deps: object) -> None:
        """Give job kinds their dependencies: each kind declaring ``deps=type(d)`` gets ``d``."""
        for dep in deps:
            self._deps[type(dep)] = dep

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
        """Queue a job; the same ``idempotency_key`` twice returns the first job.

        ``owner`` is the wallet asking for it (it may see and cancel the job, as may the
        owner of the target).
        """
        params = _checked_params(self.settings, kind, params)
        if idempotency_key is not None:
            existing = self.store.by_key(idempotency_key)
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
            view = self.store.add(record)
        except IntegrityError:  # the same key, submitted at the same moment
            existing = self.store.by_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return existing
        try:
            if self.settings.jobs.run_in_app:
                self.start_executor()
            self._enqueue(record.id)
        except Exception as exc:
            self.store.finish(record.id, "failed", error=f"could not enqueue the job: {exc}")
            raise
        return view

    def get(self, job_id: str, *, principal: Principal) -> JobView:
        """The job, if ``principal`` may see it (404 unknown; 401/403 someone else's)."""
        view = self._view(job_id)
        self.access.require(principal, view)
        return view

    def list(
        self,
        kind: str | None = None,
        status: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        *,
        principal: Principal,
    ) -> list[JobView]:
        """Newest first: the jobs matching every given filter that ``principal`` may see."""
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
        filters = {
            "kind": kind,
            "status": status,
            "target_type": target_type,
            "target_id": target_id,
            "owner": owner,
        }
        limit = max(1, limit)
        records = self._visible(principal, filters, limit)
        pending = [r for r in records if r.status not in FINISHED]
        if pending:
            self._reconcile(pending)
        return [JobView.of(r) for r in records]

    def _visible(
        self, principal: Principal, filters: dict[str, Any], limit: int
    ) -> list[JobRecord]:
        """Up to ``limit`` matching records ``principal`` may see, read page by page."""
        page = limit if principal.is_system else max(limit, 100)
        seen: dict[tuple[str | None, ...], bool] = {}
        visible: list[JobRecord] = []
        offset = 0
        while len(visible) < limit:
            records = self.store.records(filters, page, offset)
            for record in records:
                if self.access.allows(principal, JobView.of(record), seen):
                    visible.append(record)
            if len(records) < page:
                break
            offset += page
        return visible[:limit]

    def cancel(
        self, job_id: str, reason: str = "cancelled by user", *, principal: Principal
    ) -> JobView:
        """Cancel a queued or running job; a running step finishes, the next one never starts."""
        view = self.get(job_id, principal=principal)
        if view.finished or not self.store.finish(job_id, "cancelled", message=reason):
            view = self._view(job_id)
            raise ConflictError(f"job '{job_id}' already {view.status}; it cannot be cancelled")
        client = self._dbos_client()
        runtime.off_event_loop(lambda: client.cancel_workflow(job_id))
        return self._view(job_id)

    def cancel_for_target(self, target_type: str, target_id: str, reason: str) -> list[str]:
        """Cancel every unfinished job working on a target (call it when deleting the target,
        after checking that the caller may delete it)."""
        cancelled = []
        jobs = self.list(target_type=target_type, target_id=target_id, limit=500, principal=SYSTEM)
        for view in jobs:
            if not view.finished:
                try:
                    self.cancel(view.id, reason=reason, principal=SYSTEM)
                    cancelled.append(view.id)
                except ConflictError:  # finished meanwhile
                    pass
        return cancelled

    def wait(
        self, job_id: str, timeout: float = 60.0, poll_s: float = 0.05, *, principal: Principal
    ) -> JobView:
        """Block until the job is finished (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        view = self.get(job_id, principal=principal)
        while not view.finished:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} still {view.status} after {timeout:.0f} s ({view.message})"
                )
            time.sleep(poll_s)
            view = self._view(job_id)
        return view

    def watch(
        self, job_id: str, poll_s: float = 0.25, *, principal: Principal
    ) -> Iterator[JobView]:
        """Yield the job each time it changes, ending with its finished state (for SSE).

        The caller is checked once, before the first view (the job's owners do not change
        while it runs)."""
        view = self.get(job_id, principal=principal)
        last: dict[str, Any] | None = None
        while True:
            state = view.model_dump(mode="json")
            if state != last:
                last = state
                yield view
            if view.finished:
                return
            time.sleep(poll_s)
            view = self._view(job_id)

    def _view(self, job_id: str) -> JobView:
        """The job as stored, with what only dbos knows folded in (no caller check)."""
        record = self.store.record(job_id)
        if record.status not in FINISHED:
            self._reconcile([record])
        return JobView.of(record)

    # -- executing ---------------------------------------------------------------------------

    @property
    def executor_id(self) -> str:
        if self._executor_id is None:
            default = "local" if self.settings.jobs.run_in_app else runtime.worker_executor_id()
            self._executor_id = self.settings.jobs.executor_id or default
        return self._executor_id

    @property
    def executing(self) -> bool:
        return runtime.owns_runtime(self)

    def start_executor(self, executor_id: str | None = None) -> None:
        """Make this process run jobs (launch dbos); recovers this executor's pending jobs."""
        if runtime.owns_runtime(self):
            return
        if executor_id is not None:
            self._executor_id = executor_id
        load_job_modules(self.settings)
        runtime.start(self, self.settings, self.executor_id)

    def has_unfinished_jobs(self) -> bool:
        return self.store.has_unfinished()

    def recover(self, executor_ids: list[str]) -> list[str]:
        """Hand the pending jobs of dead executors back to the queue; returns their ids.

        Any live executor (the app or a worker) then picks them up; steps they finished are
        not run again. Safe to repeat: a job another executor already took is left alone.
        """
        client = self._dbos_client()
        sys_db = client._sys_db  # dbos 3.4 has no public client call for this
        recovered: list[str] = []
        for executor in executor_ids:
            for pending in sys_db.get_pending_workflows(executor, runtime.APP_VERSION):
                if sys_db.reenqueue_for_recovery(
                    pending.workflow_id, [executor], INTERNAL_QUEUE_NAME
                ):
                    recovered.append(pending.workflow_id)
        self.store.requeue(recovered)
        return recovered

    def close(self) -> None:
        runtime.stop(self)
        with self._client_lock:
            if self._client is not None:
                self._client.destroy()
                self._client = None

    # -- inside the workflow ----------------------------------------------------------------

    def _execute(self, job_id: str) -> dict[str, Any] | None:
        started = self.store.start(job_id, self.executor_id)
        if started is None:
            return None
        name, params = started
        kind = kind_of(name)
        if kind is None:
            self.store.finish(job_id, "failed", error=f"unknown job kind '{name}' in this process")
            return None
        try:
            ctx = JobContext(self, job_id, name, self._deps_for(kind))
            result = kind.fn(ctx, **params)
            if result is not None and not isinstance(result, dict):
                raise TypeError(f"a job returns a dict or None, not {type(result).__name__}")
            json.dumps(result)
        except TargetGone as exc:
            self.store.finish(job_id, "cancelled", message=exc.reason)
            return None
        except (JobCancelled, DBOSWorkflowCancelledError):
            self.store.finish(job_id, "cancelled", message="cancelled")
            raise
        except Exception as exc:
            if not runtime.owns_runtime(self):
                # The executor is shutting down under the job: it has not failed; parked, it
                # stays pending and resumes on restart.
                log.info("job %s interrupted by shutdown; it resumes on restart", job_id)
                raise runtime.parked(job_id) from exc
            self.store.finish(job_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        self.store.finish(job_id, "succeeded", result=result, message="done")
        return result

    def _deps_for(self, kind: JobKind) -> Any:
        if kind.deps is None:
            return None
        deps = self._deps.get(kind.deps)
        if deps is None:
            raise RuntimeError(
                f"job kind '{kind.name}' needs a {kind.deps.__name__}, which this process "
                "was not given (JobService.provide, in container.py)"
            )
        return deps

    # -- dbos --------------------------------------------------------------------------------

    def _reconcile(self, records: list[JobRecord]) -> None:
        """Fold in what only dbos knows about unfinished jobs.

        A job that crashed its executors too often, or was cancelled through dbos's own tools,
        ends here. A job whose process died between writing its row and enqueueing it is
        enqueued again (the job id is the workflow id, so this can never make two).
        """
        try:
            client = self._dbos_client()
            ids = [r.id for r in records]
            statuses = runtime.off_event_loop(lambda: client.list_workflows(workflow_ids=ids))
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
                error = "the job crashed its executor too often"
                self.store.finish(record.id, "failed", error=error)
            elif status.status == "ERROR":
                self.store.finish(record.id, "failed", error=str(status.error or "failed"))
            elif status.status == "CANCELLED":
                self.store.finish(record.id, "cancelled", message="cancelled")
            else:
                continue
            self.store.refresh(record)

    def _enqueue(self, job_id: str) -> None:
        options: Any = {
            "workflow_name": runtime.WORKFLOW_NAME,
            "queue_name": runtime.QUEUE_NAME,
            "workflow_id": job_id,
            "app_version": runtime.APP_VERSION,
        }
        client = self._dbos_client()
        runtime.off_event_loop(lambda: client.enqueue(options, job_id))

    def _dbos_client(self) -> DBOSClient:
        with self._client_lock:
            if self._client is None:
                url = self.settings.resolved_jobs_database_url
                self._client = runtime.off_event_loop(lambda: runtime.connect(url))
            return self._client


def _checked_params(settings: Settings, kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """A known kind and JSON-serialisable params (they are stored and replayed), or 422."""
    load_job_modules(settings)
    if kind_of(kind) is None:
        known = ", ".join(job_kinds()) or "none"
        raise ValidationError(f"unknown job kind '{kind}' (known: {known})")
    params = dict(params or {})
    try:
        json.dumps(params)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"job params must be JSON-serialisable: {exc}") from exc
    return params


def _age_s(moment: datetime) -> float:
    if moment.tzinfo is None:  # SQLite hands back naive UTC datetimes
        moment = moment.replace(tzinfo=UTC)
    return (utcnow() - moment).total_seconds()
