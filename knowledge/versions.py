"""Versions: one ingest of one file, and the bookkeeping that keeps half of one unsearchable.

An upload records a ``writing`` version (``kb_versions``); its job fills both stores and then
activates it (``knowledge/ingest.py``). A version that is replaced becomes ``retired``, one
that fails, is cancelled or is superseded by a newer upload becomes ``dropped``; both kinds
are purged from the stores here. Searches see only chunks of active versions (``active``),
and ``hidden`` names the versions whose chunks may linger until that purge.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import AnimaError, NotFoundError
from core.jobs import FINISHED, JobService, JobView, TargetGone
from core.principal import SYSTEM
from knowledge.files import VersionFiles
from knowledge.loaders import ParsedDocument
from knowledge.records import (
    DocumentRecord,
    IndexVersionRecord,
    KnowledgeBaseRecord,
    utcnow,
)
from knowledge.stores import KnowledgeStores

log = logging.getLogger(__name__)

# The job that re-cuts a whole base (``knowledge/reindex.py``); its versions are not cancelled
# with it when one document changes: the job skips that document and goes on with the rest.
REINDEX_JOB = "knowledge.reindex"


class Versions:
    """The version rows of every base, and purging what they no longer need from the stores."""

    def __init__(
        self, db: Database, jobs: JobService, stores: KnowledgeStores, files: VersionFiles
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.stores = stores
        self.files = files

    # ----- a new version ------------------------------------------------------------------
    def record(
        self, kb_id: str, version: str, parsed: ParsedDocument, digest: str, size: int
    ) -> tuple[str, list[str]]:
        """Create or reuse the document row and add a ``writing`` version, in one transaction.

        Returns the document id and the jobs of older pending versions it supersedes."""
        for attempt in range(2):
            try:
                with self.db.session() as s:
                    doc = s.scalar(
                        select(DocumentRecord).where(
                            DocumentRecord.kb_id == kb_id,
                            DocumentRecord.filename == parsed.filename,
                        )
                    )
                    superseded: list[str] = []
                    if doc is None:
                        doc = _new_document(kb_id, parsed, digest, size)
                        s.add(doc)
                    else:
                        superseded = self._supersede(s, doc)
                    s.add(_new_version(version, kb_id, doc.id, parsed, digest, size))
                    return doc.id, superseded
            except IntegrityError:  # the same new name uploaded twice at once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _supersede(session: Session, doc: DocumentRecord) -> list[str]:
        """Drop the document's pending versions (a newer upload wins); returns their jobs."""
        pending = session.scalars(
            select(IndexVersionRecord).where(
                IndexVersionRecord.document_id == doc.id,
                IndexVersionRecord.status == "writing",
            )
        ).all()
        superseded = []
        for old in pending:
            old.status = "dropped"
            if old.job_id:
                superseded.append(old.job_id)
        doc.status = "updating" if doc.active_version else "indexing"
        doc.error = None
        doc.updated_at = utcnow()
        return superseded

    @staticmethod
    def duplicate(session: Session, kb_id: str, digest: str) -> DocumentRecord | None:
        """A document of this base whose current or pending content has this hash."""
        doc = session.scalar(
            select(DocumentRecord).where(
                DocumentRecord.kb_id == kb_id,
                DocumentRecord.content_hash == digest,
                DocumentRecord.active_version.is_not(None),
            )
        )
        if doc is not None:
            return doc
        pending = session.scalar(
            select(IndexVersionRecord).where(
                IndexVersionRecord.kb_id == kb_id,
                IndexVersionRecord.content_hash == digest,
                IndexVersionRecord.status == "writing",
            )
        )
        return session.get(DocumentRecord, pending.document_id) if pending else None

    def writing(self, version: str) -> IndexVersionRecord:
        """The version, still being written; ``TargetGone`` (the job stops) otherwise."""
        with self.db.session() as s:
            row = s.get(IndexVersionRecord, version)
            if row is None or row.status != "writing":
                raise TargetGone("the document was replaced or deleted while it was indexed")
            if s.get(KnowledgeBaseRecord, row.kb_id) is None:
                raise TargetGone("the knowledge base was deleted")
            return row

    # ----- ending versions ------------------------------------------------------------------
    def settle(self, docs: Sequence[DocumentRecord]) -> None:
        """Fold in ingest jobs that ended without cleaning up (crashed too often, cancelled
        before they started): their versions are dropped."""
        for doc in docs:
            with self.db.session() as s:
                pending = s.scalars(
                    select(IndexVersionRecord).where(
                        IndexVersionRecord.document_id == doc.id,
                        IndexVersionRecord.status == "writing",
                    )
                ).all()
            for version in pending:
                if version.job_id is None:
                    continue
                try:
                    job = self.jobs.get(version.job_id, principal=SYSTEM)
                except NotFoundError:
                    self.drop(version.id, "its indexing job was lost")
                    continue
                if job.status in FINISHED and job.status != "succeeded":
                    self.drop(version.id, job.error or f"indexing {job.status}")

    def drop(self, version: str, reason: str, by_job: bool = False) -> None:
        """Give up on a version being written: its document keeps what it had (or fails).

        ``by_job``: the version's own job is ending, so nothing will write to it any more and
        its bookkeeping row can go once its chunks are purged.
        """
        with self.db.session() as s:
            row = s.get(IndexVersionRecord, version)
            if row is None:
                return
            kb_id = row.kb_id
            if row.status == "writing":
                row.status = "dropped"
                doc = s.get(DocumentRecord, row.document_id)
                if doc is not None:
                    doc.status = "ready" if doc.active_version else "failed"
                    doc.error = None if doc.active_version else reason[:2000]
                    doc.updated_at = utcnow()
            base_exists = s.get(KnowledgeBaseRecord, kb_id) is not None
        if base_exists:
            self.purge(kb_id, quiet=True, ended=version if by_job else None)
        else:
            self.drop_base(kb_id)

    def purge(self, kb_id: str, quiet: bool = False, ended: str | None = None) -> int:
        """Remove retired and dropped versions from both stores (idempotent); returns how many.

        A dropped version whose job may still be inside a step (cancelled mid-batch) keeps its
        row after the purge, so a later purge also removes what that step still writes.
        """
        with self.db.session() as s:
            versions = s.scalars(
                select(IndexVersionRecord).where(
                    IndexVersionRecord.kb_id == kb_id,
                    IndexVersionRecord.status.in_(("retired", "dropped")),
                )
            ).all()
        purged = 0
        for version in versions:
            try:
                self.stores.store.delete_version(kb_id, version.id)
                self.stores.keywords.delete_version(kb_id, version.id)
            except Exception as exc:
                if not quiet:
                    raise
                log.warning("could not purge version %s yet (%s); it stays hidden", version.id, exc)
                continue
            purged += 1
            done = version.status == "retired" or version.id == ended
            if not (done or self._job_ended(version.job_id)):
                continue
            self.files.remove(kb_id, version.id)
            with self.db.session() as s:
                s.execute(delete(IndexVersionRecord).where(IndexVersionRecord.id == version.id))
        return purged

    def drop_base(self, kb_id: str) -> None:
        """Remove everything of a deleted base outside the database: chunks and files."""
        self.stores.drop(kb_id)
        self.files.remove_base(kb_id)

    # ----- what searches may see -------------------------------------------------------------
    def active(self, versions: set[str]) -> set[str]:
        """Which of these versions are some document's searchable one."""
        if not versions:
            return set()
        with self.db.session() as s:
            return set(
                s.scalars(
                    select(DocumentRecord.active_version).where(
                        DocumentRecord.active_version.in_(list(versions))
                    )
                )
            )

    def hidden(self, kb_id: str) -> set[str]:
        """Versions of a base that may have chunks in the stores but are not searchable."""
        with self.db.session() as s:
            return set(
                s.scalars(
                    select(IndexVersionRecord.id).where(
                        IndexVersionRecord.kb_id == kb_id, IndexVersionRecord.status != "active"
                    )
                )
            )

    # ----- their jobs ---------------------------------------------------------------------
    def job(self, job_id: str | None) -> JobView | None:
        if job_id is None:
            return None
        try:
            return self.jobs.get(job_id, principal=SYSTEM)
        except NotFoundError:
            return None

    def cancel_quietly(self, job_id: str, reason: str) -> None:
        """Cancel the job of a version that was superseded or deleted; a re-index job goes on
        (its steps skip a version that is no longer being written)."""
        job = self.job(job_id)
        if job is None or job.kind == REINDEX_JOB:
            return
        with contextlib.suppress(AnimaError):  # already finished
            self.jobs.cancel(job_id, reason=reason, principal=SYSTEM)

    def _job_ended(self, job_id: str | None) -> bool:
        if job_id is None:
            return True
        try:
            return self.jobs.get(job_id, principal=SYSTEM).finished
        except NotFoundError:
            return True


def _new_document(kb_id: str, parsed: ParsedDocument, digest: str, size: int) -> DocumentRecord:
    return DocumentRecord(
        id=uuid.uuid4().hex,
        kb_id=kb_id,
        filename=parsed.filename,
        media_type=parsed.media_type,
        content_hash=digest,
        size_bytes=size,
        pages=parsed.pages,
        status="indexing",
        chunk_count=0,
    )


def _new_version(
    version: str, kb_id: str, document_id: str, parsed: ParsedDocument, digest: str, size: int
) -> IndexVersionRecord:
    return IndexVersionRecord(
        id=version,
        kb_id=kb_id,
        document_id=document_id,
        filename=parsed.filename,
        media_type=parsed.media_type,
        content_hash=digest,
        size_bytes=size,
        pages=parsed.pages,
        status="writing",
        chunk_count=0,
    )
