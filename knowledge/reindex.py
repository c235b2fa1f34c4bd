"""Re-indexing a base to the current chunking, in the background, while the old index serves.

A better splitter or another token budget (``ANIMA_KNOWLEDGE_CHUNK_TOKENS``) leaves the bases
built before cut the old way. Every version records how its chunks were cut
(``kb_versions.chunking``), so such bases are found (``stale_documents`` in their view) and
offered a re-index: one background job per base (``knowledge/jobs.py``).

The job reuses what makes a single upload atomic (``knowledge/versions.py``) for the whole
base at once:

1. ``plan`` gives every stale document a new ``writing`` version holding a copy of its
   extracted text (one transaction; a re-run finds the versions it made instead of making
   more).
2. Each version is chunked, embedded batch by batch and keyword-indexed beside the active
   ones, in the same Chroma collection and tantivy folder but under its own version id, which
   searches skip until it is active. Every batch is a durable step: a killed job resumes at
   the batch it was in, and a re-run batch overwrites the same chunk ids.
3. ``activate`` checks both stores hold every chunk of every version, then switches all the
   documents to their new versions in one SQL transaction; the old versions are then purged.

So until that commit every search answers from the old index, and after it from the new one,
never a mix. A job that fails or is cancelled drops its versions and the old index stays. A
document deleted or uploaded again during the job simply drops out of it.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import Database
from core.files import atomic_write
from core.jobs import JobService, JobView, TargetGone
from core.principal import SYSTEM, OwnerCheck, Principal
from core.settings import Settings
from knowledge.bases import TARGET_TYPE, authorize_base, check_model, load_base
from knowledge.files import VersionFiles
from knowledge.ingest import Ingestion, switch
from knowledge.records import DocumentRecord, IndexVersionRecord, KnowledgeBaseRecord, utcnow
from knowledge.versions import REINDEX_JOB, Versions

log = logging.getLogger(__name__)

GONE = -1  # what a step returns for a version no longer being written (the job skips it)


class Reindexing:
    """Starts the re-index job of a base and runs its steps."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        jobs: JobService,
        owners: OwnerCheck,
        files: VersionFiles,
        versions: Versions,
        ingestion: Ingestion,
    ) -> None:
        self.settings = settings
        self.db = db
        self.jobs = jobs
        self.owners = owners
        self.files = files
        self.versions = versions
        self.ingestion = ingestion

    def start(self, kb_id: str, *, principal: Principal) -> JobView:
        """The base's running re-index job, or a new one (only the base's owner may)."""
        with self.db.session() as s:
            base = load_base(s, kb_id)
            authorize_base(self.owners, principal, base)
            check_model(self.settings, s, base)
        for job in self.jobs.list(
            kind=REINDEX_JOB, target_type=TARGET_TYPE, target_id=kb_id, limit=10, principal=SYSTEM
        ):
            if not job.finished:
                return job
        return self.jobs.submit(
            REINDEX_JOB, {"kb_id": kb_id}, target_type=TARGET_TYPE, target_id=kb_id
        )

    # ----- the job's steps --------------------------------------------------------------------
    def plan(self, kb_id: str, job_id: str) -> list[list[str]]:
        """A new ``writing`` version for every stale, settled document: ``[document, version]``
        pairs. Documents with an upload in progress are left to it (it cuts the new way)."""
        signature = self.ingestion.signature()
        with self.db.session() as s:
            if s.get(KnowledgeBaseRecord, kb_id) is None:
                raise TargetGone("the knowledge base was deleted")
            made = s.scalars(
                select(IndexVersionRecord)
                .where(IndexVersionRecord.job_id == job_id, IndexVersionRecord.status == "writing")
                .order_by(IndexVersionRecord.created_at, IndexVersionRecord.id)
            ).all()
            if made:  # this step ran before and committed, but its result was not recorded
                return [[v.document_id, v.id] for v in made]
            docs = s.scalars(
                select(DocumentRecord)
                .where(DocumentRecord.kb_id == kb_id, DocumentRecord.status == "ready")
                .order_by(DocumentRecord.created_at, DocumentRecord.id)
            ).all()
            plan = []
            for doc in docs:
                version = self._new_version(s, doc, signature, job_id)
                if version is not None:
                    plan.append([doc.id, version])
            return plan

    def _new_version(
        self, s: Session, doc: DocumentRecord, signature: str, job_id: str
    ) -> str | None:
        active = s.get(IndexVersionRecord, doc.active_version) if doc.active_version else None
        if active is None or active.chunking == signature:
            return None
        source = self.files.parsed_path(doc.kb_id, active.id)
        if not source.exists():
            log.warning("%s: its extracted text is gone; it keeps its chunks", doc.filename)
            return None
        version = uuid.uuid4().hex
        atomic_write(self.files.parsed_path(doc.kb_id, version), source.read_bytes())
        s.add(
            IndexVersionRecord(
                id=version,
                kb_id=doc.kb_id,
                document_id=doc.id,
                filename=active.filename,
                media_type=active.media_type,
                content_hash=active.content_hash,
                size_bytes=active.size_bytes,
                pages=active.pages,
                status="writing",
                chunk_count=0,
                job_id=job_id,
            )
        )
        doc.status = "updating"
        doc.job_id = job_id
        doc.updated_at = utcnow()
        return version

    def chunk(self, kb_id: str, version: str) -> int:
        """Chunk one version; ``GONE`` if its document dropped out of the job."""
        try:
            return self.ingestion.prepare_chunks(kb_id, version)
        except TargetGone:
            return self._gone(kb_id)

    def vectors(self, kb_id: str, version: str, start: int, count: int) -> int:
        try:
            return self.ingestion.write_vectors(kb_id, version, start, count)
        except TargetGone:
            return self._gone(kb_id)

    def keywords(self, kb_id: str, version: str) -> int:
        try:
            return self.ingestion.write_keywords(kb_id, version)
        except TargetGone:
            return self._gone(kb_id)

    def activate(self, kb_id: str, plan: list[list[str]]) -> int:
        """Switch every document still in the job to its new version, in one transaction.

        Refuses (and the job retries) while any store misses a chunk. Returns how many
        documents were switched (0 on a re-run after the commit)."""
        ready = []
        for document_id, version in plan:
            try:
                self.versions.writing(version)
            except TargetGone:
                self._gone(kb_id)
                continue
            ready.append((document_id, version, self.ingestion.check_complete(kb_id, version)))
        switched = 0
        with self.db.session() as s:
            for document_id, version, chunks in ready:
                try:
                    switch(s, kb_id, document_id, version, chunks)
                except TargetGone:  # deleted or uploaded again since the check above
                    continue
                switched += 1
        for _, version, _ in ready:
            self.files.chunks_path(kb_id, version).unlink(missing_ok=True)
        return switched

    def drop(self, plan: list[list[str]], reason: str) -> None:
        """The job ends without switching: its versions go, the old index stays."""
        for _, version in plan:
            self.versions.drop(version, reason, by_job=True)

    def _gone(self, kb_id: str) -> int:
        with self.db.session() as s:
            if s.get(KnowledgeBaseRecord, kb_id) is None:
                raise TargetGone("the knowledge base was deleted")
        return GONE
