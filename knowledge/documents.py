"""Documents of a base: upload (parse at once, index in a job), list, read, delete.

``add`` parses the upload before anything is stored, so a bad file is refused with a message
naming it; then it writes the extracted text to a file, records a new ``writing`` version and
submits the ingest job (``knowledge/jobs.py``, steps in ``knowledge/ingest.py``). The same
bytes uploaded twice into a base add nothing; a file with the name of an existing document
but new content replaces that document's chunks once the new version is activated.
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select

from core.db import Database
from core.errors import NotFoundError, UploadTooLargeError
from core.jobs import JobService, JobView
from core.principal import OwnerCheck, Principal
from core.settings import Settings
from knowledge.bases import TARGET_TYPE, authorize_base, check_model, load_base, load_document
from knowledge.files import VersionFiles
from knowledge.loaders import ParsedDocument, clean_filename, parse_document
from knowledge.records import DocumentRecord, IndexVersionRecord
from knowledge.schema import DocumentView, UploadResult, doc_view
from knowledge.versions import Versions

INGEST_JOB = "knowledge.ingest"


class Documents:
    """The files of each base and their indexing state."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        jobs: JobService,
        owners: OwnerCheck,
        files: VersionFiles,
        versions: Versions,
    ) -> None:
        self.settings = settings
        self.db = db
        self.jobs = jobs
        self.owners = owners
        self.files = files
        self.versions = versions

    def add(
        self, kb_id: str, filename: str | None, content: bytes, *, principal: Principal
    ) -> UploadResult:
        """Parse and queue a file for indexing; the same bytes twice add nothing.

        Raises ``DocumentError`` (422) / ``UnsupportedDocumentType`` (415) /
        ``UploadTooLargeError`` (413) naming the file; nothing is stored then.
        """
        name = clean_filename(filename)
        with self.db.session() as s:
            base = load_base(s, kb_id)
            authorize_base(self.owners, principal, base)
            check_model(self.settings, s, base)
        limit = self.settings.knowledge.max_upload_bytes
        if len(content) > limit:
            raise UploadTooLargeError(
                f"{name}: the file is {len(content) / 1e6:.1f} MB; the limit is "
                f"{limit / 1e6:.1f} MB (ANIMA_KNOWLEDGE_MAX_UPLOAD_MB)"
            )
        parsed = parse_document(name, content)
        digest = hashlib.sha256(content).hexdigest()
        with self.db.session() as s:
            duplicate = self.versions.duplicate(s, kb_id, digest)
            if duplicate is not None:
                return UploadResult(
                    document=doc_view(duplicate),
                    job=self.versions.job(duplicate.job_id)
                    if duplicate.status != "ready"
                    else None,
                    duplicate=True,
                )
        return self._new_version(kb_id, parsed, digest, len(content))

    def _new_version(
        self, kb_id: str, parsed: ParsedDocument, digest: str, size: int
    ) -> UploadResult:
        """Store the parsed text as a new version and start the job that indexes it."""
        version = uuid.uuid4().hex
        self.files.write_parsed(kb_id, version, parsed)
        try:
            document_id, superseded = self.versions.record(kb_id, version, parsed, digest, size)
        except BaseException:
            self.files.remove(kb_id, version)
            raise
        for old_job in superseded:
            self.versions.cancel_quietly(old_job, "replaced by a newer upload of the same file")
        try:
            job = self.jobs.submit(
                INGEST_JOB,
                {"kb_id": kb_id, "document_id": document_id, "version": version},
                target_type=TARGET_TYPE,
                target_id=kb_id,
                idempotency_key=f"{INGEST_JOB}:{version}",
            )
        except Exception as exc:
            self.versions.drop(version, f"could not start indexing: {exc}")
            raise
        view = self._link_job(document_id, version, job)
        if view is None:
            raise NotFoundError(
                f"{parsed.filename}: the document was deleted while it was being added"
            )
        return UploadResult(document=view, job=job, duplicate=False)

    def _link_job(self, document_id: str, version: str, job: JobView) -> DocumentView | None:
        """Note the job on the version and, while it is still pending, on its document."""
        with self.db.session() as s:
            row = s.get(IndexVersionRecord, version)
            if row is not None:
                row.job_id = job.id
            doc = s.get(DocumentRecord, document_id)
            if doc is not None and row is not None and row.status == "writing":
                doc.job_id = job.id
            return doc_view(doc) if doc is not None else None

    def list_all(self, kb_id: str) -> list[DocumentView]:
        with self.db.session() as s:
            load_base(s, kb_id)
            rows = s.scalars(
                select(DocumentRecord)
                .where(DocumentRecord.kb_id == kb_id)
                .order_by(DocumentRecord.created_at)
            ).all()
        self.versions.settle([r for r in rows if r.status in ("indexing", "updating")])
        with self.db.session() as s:
            rows = s.scalars(
                select(DocumentRecord)
                .where(DocumentRecord.kb_id == kb_id)
                .order_by(DocumentRecord.created_at)
            ).all()
            return [doc_view(r) for r in rows]

    def get(self, kb_id: str, document_id: str) -> DocumentView:
        with self.db.session() as s:
            row = load_document(s, kb_id, document_id)
        if row.status in ("indexing", "updating"):
            self.versions.settle([row])
        with self.db.session() as s:
            return doc_view(load_document(s, kb_id, document_id))

    def delete(self, kb_id: str, document_id: str, *, principal: Principal) -> None:
        """Unsearchable at once (one transaction); its chunks are then purged from the stores."""
        with self.db.session() as s:
            authorize_base(self.owners, principal, load_base(s, kb_id))
            doc = load_document(s, kb_id, document_id)
            versions = s.scalars(
                select(IndexVersionRecord).where(IndexVersionRecord.document_id == doc.id)
            ).all()
            jobs = [v.job_id for v in versions if v.status == "writing" and v.job_id]
            for v in versions:
                v.status = "retired" if v.status == "active" else "dropped"
            s.delete(doc)
        for job_id in jobs:
            self.versions.cancel_quietly(job_id, "the document was deleted")
        self.versions.purge(kb_id, quiet=True)
