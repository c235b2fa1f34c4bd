"""Usage records written off the reply path, in batches.

A request hands its record to :meth:`BatchWriter.put` (a list append under a lock: no I/O on the
request's thread). A background thread writes whatever is queued in one transaction every
``interval_s`` (0.5 s by default, ``ANIMA_USAGE_FLUSH_S``) and on ``close``. So:

* a ``kill -9`` loses at most the records of the last interval (at most one second);
* a failed flush keeps its batch and retries it with the next one, in order;
* a retry never duplicates: rows are keyed by the request id and inserted with "on conflict do
  nothing", so a batch whose commit went through but whose answer was lost is written once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.db import Database
from usage.records import UsageRecord

log = logging.getLogger(__name__)

Row = dict[str, Any]


class BatchWriter:
    def __init__(
        self,
        db: Database,
        interval_s: float = 0.5,
        on_written: Callable[[list[Row]], None] | None = None,
    ) -> None:
        self.db = db
        self.interval_s = interval_s
        self._on_written = on_written
        self._queue: list[Row] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time (thread, close, tests)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0  # batches written (for the benchmark's flush rate)
        self.failures = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
            self._thread.start()

    def put(self, row: Row) -> None:
        with self._lock:
            self._queue.append(row)
        if self._thread is None:
            self.start()

    def pending(self) -> list[Row]:
        """Records not written yet (a copy)."""
        with self._lock:
            return list(self._queue)

    def flush(self) -> int:
        """Write everything queued now, in one transaction; returns how many rows (or raises,
        keeping them queued for the next try)."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._queue)
            if not batch:
                return 0
            self._write(batch)
            with self._lock:
                del self._queue[: len(batch)]  # only what was written; newer rows stay
            self.flushes += 1
        if self._on_written is not None:
            self._on_written(batch)
        return len(batch)

    def _write(self, batch: list[Row]) -> None:
        with self.db.session() as s:
            s.execute(_insert_ignoring_duplicates(s.get_bind().dialect.name), batch)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # the database is away: keep the batch, try again
            self.failures += 1
            log.warning("usage records not written yet (%s); retrying", exc)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._flush_logged()


def _insert_ignoring_duplicates(dialect: str) -> Any:
    table = UsageRecord.__table__
    if dialect == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["id"])
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=["id"])
    return insert(table)
