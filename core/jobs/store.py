"""Reads and writes of the ``jobs`` table (Anima's view of each job; dbos keeps its own).

Every status change is one conditional ``UPDATE ... WHERE status IN (unfinished)``, so a
cancel racing the job's own end can never turn a finished job back, nor finish one twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from core.db import Database
from core.errors import NotFoundError
from core.job_records import JobRecord, utcnow
from core.jobs.view import JobView

UNFINISHED = ("queued", "running")


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, record: JobRecord) -> JobView:
        """Store a new job (``IntegrityError`` when its idempotency key is already taken)."""
        with self.db.session() as session:
            session.add(record)
        return JobView.of(record)

    def record(self, job_id: str) -> JobRecord:
        with self.db.session() as session:
            record = session.get(JobRecord, job_id)
            if record is None:
                raise NotFoundError(f"no job with id '{job_id}'")
            return record

    def records(self, filters: dict[str, Any], limit: int, offset: int = 0) -> list[JobRecord]:
        """Newest first; ``filters`` maps column names to the value they must equal."""
        query = select(JobRecord).order_by(JobRecord.created_at.desc(), JobRecord.id)
        for column, value in filters.items():
            if value is not None:
                query = query.where(getattr(JobRecord, column) == value)
        with self.db.session() as session:
            return list(session.scalars(query.offset(offset).limit(limit)))

    def by_key(self, key: str) -> JobView | None:
        with self.db.session() as session:
            record = session.scalar(select(JobRecord).where(JobRecord.idempotency_key == key))
        return JobView.of(record) if record else None

    def status(self, job_id: str) -> str | None:
        with self.db.session() as session:
            return session.scalar(select(JobRecord.status).where(JobRecord.id == job_id))

    def has_unfinished(self) -> bool:
        with self.db.session() as session:
            query = select(JobRecord.id).where(JobRecord.status.in_(UNFINISHED))
            return session.scalars(query.limit(1)).first() is not None

    def start(self, job_id: str, executor_id: str) -> tuple[str, dict[str, Any]] | None:
        """Mark a job running on ``executor_id``; its kind and params, or ``None`` when it
        is gone or already finished (a cancel won the race)."""
        with self.db.session() as session:
            record = session.get(JobRecord, job_id)
            if record is None or record.status not in UNFINISHED:
                return None
            kind, params = record.kind, dict(record.params or {})
            session.execute(
                update(JobRecord)
                .where(JobRecord.id == job_id, JobRecord.status.in_(UNFINISHED))
                .values(
                    status="running",
                    started_at=record.started_at or utcnow(),
                    executor_id=executor_id,
                    message="running" if record.status == "queued" else record.message,
                    updated_at=utcnow(),
                )
            )
        return kind, params

    def write_progress(self, job_id: str, done: int, total: int, message: str) -> None:
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

    def finish(
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
                .where(JobRecord.id == job_id, JobRecord.status.in_(UNFINISHED))
                .values(**values)
            )
            return bool(done.rowcount)

    def requeue(self, job_ids: list[str]) -> None:
        """Show recovered jobs as waiting again (their executor died while running them)."""
        with self.db.session() as session:
            session.execute(
                update(JobRecord)
                .where(JobRecord.id.in_(job_ids), JobRecord.status == "running")
                .values(status="queued", message="recovered; waiting for a worker")
            )

    def refresh(self, record: JobRecord) -> None:
        """Copy the stored outcome onto ``record`` (after ``finish`` changed the row)."""
        with self.db.session() as session:
            fresh = session.get(JobRecord, record.id)
            if fresh is not None:
                record.status, record.message, record.error = (
                    fresh.status,
                    fresh.message,
                    fresh.error,
                )
                record.finished_at = fresh.finished_at
