"""The steps of the ingest job (``knowledge/jobs.py``): chunk, embed, index keywords, activate.

Each step is safe to repeat: a job killed mid-way re-runs the step it was in. Chunk ids are
``<version>:<position>``, so a repeated batch overwrites what it wrote before instead of adding
copies, and every step first checks that its version is still being written, so a version
that was replaced, deleted or cancelled stops its job (``TargetGone``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.db import Database
from core.jobs import TargetGone
from core.settings import Settings
from knowledge.chunking import chunk_records, chunking_signature
from knowledge.files import VersionFiles
from knowledge.records import DocumentRecord, IndexVersionRecord, KnowledgeBaseRecord, utcnow
from knowledge.stores import KnowledgeStores
from knowledge.versions import Versions


def index_signature(settings: Settings) -> str:
    """How a version's chunks are made now: the chunking and, when on, the int8 embedder
    (its vectors differ a little from full precision, so a base switched over is re-indexed)."""
    k = settings.knowledge
    signature = chunking_signature(k.chunk_tokens, k.chunk_overlap)
    return signature + "+int8" if k.embedding_quantize else signature


class Ingestion:
    """Fills both stores with one version's chunks, then makes it the searchable one."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        stores: KnowledgeStores,
        files: VersionFiles,
        versions: Versions,
    ) -> None:
        self.settings = settings
        self.db = db
        self.stores = stores
        self.files = files
        self.versions = versions

    def prepare_chunks(self, kb_id: str, version: str) -> int:
        """Chunk the version's text into ``<version>.chunks.json``; returns the chunk count."""
        row = self.versions.writing(version)
        chunks = chunk_records(
            self.files.read_sections(kb_id, version),
            row.filename,
            self.stores.embedder.count_tokens,
            self.settings.knowledge.chunk_tokens,
            self.settings.knowledge.chunk_overlap,
        )
        self.files.write_chunks(kb_id, version, row.filename, row.document_id, chunks)
        with self.db.session() as s:
            written = s.get(IndexVersionRecord, version)
            if written is not None:
                written.chunking = self.signature()
        return len(chunks)

    def signature(self) -> str:
        """How chunks are made with the current settings (stamped on each version)."""
        return index_signature(self.settings)

    def write_vectors(self, kb_id: str, version: str, start: int, count: int) -> int:
        """Embed and upsert chunks ``start``..``start+count`` (safe to repeat)."""
        self.versions.writing(version)
        chunks = self.files.read_chunks(kb_id, version)[start : start + count]
        self.stores.store.upsert(kb_id, chunks)
        try:
            self.versions.writing(version)
        except TargetGone:
            # Dropped (cancelled, replaced, deleted) while this batch was being written: a
            # purge may already have run, so what this batch wrote goes now.
            self.stores.store.delete_version(kb_id, version)
            raise
        return len(chunks)

    def write_keywords(self, kb_id: str, version: str) -> int:
        """Index every chunk of the version in the keyword index, in one commit."""
        self.versions.writing(version)
        chunks = self.files.read_chunks(kb_id, version)
        self.stores.keywords.add(kb_id, chunks)
        return len(chunks)

    def activate_version(self, kb_id: str, document_id: str, version: str) -> str | None:
        """Make the version the document's searchable one, in one transaction.

        Returns the version it replaced. Refuses (and the job retries) if either store is
        missing chunks, so a version is never activated half-written.
        """
        with self.db.session() as s:
            row = s.get(IndexVersionRecord, version)
            if row is not None and row.status == "active":
                return None  # a re-run after the commit
        self.versions.writing(version)
        expected = self.check_complete(kb_id, version)
        with self.db.session() as s:
            old = switch(s, kb_id, document_id, version, expected)
        self.files.chunks_path(kb_id, version).unlink(missing_ok=True)
        return old

    def check_complete(self, kb_id: str, version: str) -> int:
        """The version's chunk count, if both stores hold every chunk; raises otherwise."""
        expected = len(self.files.read_chunks(kb_id, version))
        in_store = self.stores.store.count(kb_id, version)
        in_index = self.stores.keywords.count(kb_id, version)
        if in_store != expected or in_index != expected:
            raise RuntimeError(
                f"version {version} is incomplete: {in_store}/{expected} chunks in Chroma, "
                f"{in_index}/{expected} in the keyword index"
            )
        return expected


def switch(s: Session, kb_id: str, document_id: str, version: str, chunks: int) -> str | None:
    """Retire the document's active version and activate ``version`` (the caller commits)."""
    row = s.get(IndexVersionRecord, version)
    doc = s.get(DocumentRecord, document_id)
    if row is None or row.status != "writing":
        raise TargetGone("the document was replaced or deleted while it was indexed")
    if doc is None:
        raise TargetGone("the document was deleted while it was indexed")
    old = doc.active_version
    if old is not None:
        previous = s.get(IndexVersionRecord, old)
        if previous is not None:
            previous.status = "retired"
    row.status = "active"
    row.chunk_count = chunks
    doc.active_version = version
    doc.status = "ready"
    doc.filename = row.filename
    doc.media_type = row.media_type
    doc.content_hash = row.content_hash
    doc.size_bytes = row.size_bytes
    doc.pages = row.pages
    doc.chunk_count = chunks
    doc.error = None
    doc.updated_at = utcnow()
    base = s.get(KnowledgeBaseRecord, kb_id)
    if base is not None:
        base.updated_at = utcnow()
    return old
