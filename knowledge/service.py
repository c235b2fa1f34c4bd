"""Knowledge bases: create, fill, search, share between agents; ground replies with citations.

The API and the studio both call this service. A knowledge base is its own object: an agent
may use several, a base may serve many agents (``agent_knowledge_bases``).

How a document becomes searchable, and why a crash cannot leave half of it searchable:

1. ``add_document`` parses the upload at once (a bad file is refused with a message naming it,
   before anything is stored), writes the extracted text to a file and records a new *version*
   (``kb_versions``, status ``writing``); the ingest job (``knowledge/jobs.py``) does the rest.
2. The job chunks the text, embeds and upserts the chunks into Chroma batch by batch (chunk ids
   ``<version>:<position>``, so a re-run overwrites instead of adding), then indexes them in
   tantivy in one commit. Each batch is a durable step: a killed job resumes where it was.
3. ``activate_version`` checks that both stores hold every chunk, then switches the
   document's ``active_version`` in one SQL transaction. Searches only return chunks of active
   versions, so until that commit the new chunks are invisible, and after it the old ones are.
4. Old (replaced) and dropped (failed, cancelled) versions are then purged from both stores.

The same bytes uploaded twice into a base add nothing; a file with the name of an existing
document but new content replaces that document's chunks in step 3.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from agents.service import AgentService
from core.db import Database, UTCDateTime
from core.errors import (
    AnimaError,
    ConflictError,
    NotFoundError,
    UploadTooLargeError,
    ValidationError,
)
from core.files import atomic_write, check_id, is_safe_id
from core.jobs import FINISHED, JobService, JobView, TargetGone
from core.principal import ANONYMOUS, OwnerCheck, Principal
from core.settings import Settings
from knowledge.base import Chunk, Embedder, KeywordIndex, VectorStore
from knowledge.chunking import chunk_records
from knowledge.loaders import ParsedDocument, Section, clean_filename, parse_document
from knowledge.records import (
    AgentKnowledgeRecord,
    DocumentRecord,
    IndexVersionRecord,
    KnowledgeBaseRecord,
    RetrievalTraceRecord,
    utcnow,
)
from knowledge.retrieval import Hit, Retrieval, retrieve

log = logging.getLogger(__name__)

INGEST_JOB = "knowledge.ingest"
TARGET_TYPE = "knowledge_base"
SNIPPET_CHARS = 240
MAX_QUERY_CHARS = 2000
MAX_K = 50


class KnowledgeBaseView(BaseModel):
    id: str
    name: str
    description: str
    embedding_model: str
    document_count: int
    chunk_count: int
    agent_ids: list[str]
    owner_address: str | None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class DocumentView(BaseModel):
    id: str
    kb_id: str
    filename: str
    media_type: str
    content_hash: str
    size_bytes: int
    pages: int | None
    status: str = Field(description="indexing, ready, updating (old version searchable) or failed")
    chunk_count: int
    job_id: str | None
    error: str | None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class UploadResult(BaseModel):
    document: DocumentView
    job: JobView | None = Field(description="The ingest job; null when nothing had to be done.")
    duplicate: bool = Field(description="True when this exact file was already in the base.")


class SearchHit(BaseModel):
    chunk_id: str
    kb_id: str
    document_id: str
    document: str = Field(description="The document's file name.")
    page: int | None
    position: int
    text: str
    score: float = Field(description="Fused score 0..1 (hybrid) or cosine similarity (dense).")
    similarity: float
    dense_rank: int | None
    keyword_rank: int | None
    found_by: list[str] = Field(
        default_factory=list,
        description="The retrieval stages that found this passage (dense, keyword, sentence; "
        "'neighbour:...' for an adjacent chunk merged into it).",
    )


class Source(BaseModel):
    """A citation shown under a reply: ``[marker]`` in the prompt and the reply."""

    marker: int
    document: str
    page: int | None
    snippet: str
    kb_id: str
    document_id: str
    chunk_id: str
    score: float


class TraceView(BaseModel):
    message_id: str
    query: str
    mode: str
    kb_ids: list[str]
    hits: list[dict[str, Any]]
    created_at: UTCDateTime


class Grounding(BaseModel):
    """What retrieval found for one reply: prompt blocks, sources and the trace to store."""

    query: str
    mode: str
    kb_ids: list[str]
    hits: list[SearchHit]

    def prompt_blocks(self) -> list[str]:
        """One block per hit, numbered from 1 in rank order (the citation markers)."""
        blocks = []
        for n, hit in enumerate(self.hits, start=1):
            where = f"{hit.document}, page {hit.page}" if hit.page else hit.document
            blocks.append(f"[{n}] ({where}) {hit.text}")
        return blocks

    def sources(self, used: int | None = None) -> list[Source]:
        hits = self.hits if used is None else self.hits[:used]
        return [
            Source(
                marker=n,
                document=h.document,
                page=h.page,
                snippet=_snippet(h.text),
                kb_id=h.kb_id,
                document_id=h.document_id,
                chunk_id=h.chunk_id,
                score=h.score,
            )
            for n, h in enumerate(hits, start=1)
        ]


class KnowledgeService:
    """Knowledge bases, their documents, search, agent links and retrieval traces."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        agents: AgentService,
        jobs: JobService,
        owners: OwnerCheck,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.agents = agents
        self.jobs = jobs
        self.owners = owners
        self._embedder = embedder
        self._store: VectorStore | None = None
        self._keywords: KeywordIndex | None = None
        self._lock = threading.Lock()

    # ----- components (built on first use: a process that never searches loads nothing) -----
    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from knowledge.factory import make_embedder

                self._embedder = make_embedder(self.settings)
            return self._embedder

    @property
    def store(self) -> VectorStore:
        embedder = self.embedder
        with self._lock:
            if self._store is None:
                from knowledge.factory import make_vector_store

                self._store = make_vector_store(self.settings, embedder)
            return self._store

    @property
    def keywords(self) -> KeywordIndex:
        with self._lock:
            if self._keywords is None:
                from knowledge.factory import make_keyword_index

                self._keywords = make_keyword_index(self.settings)
            return self._keywords

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._keywords is not None:
                self._keywords.close()
                self._keywords = None

    # ----- the one place for edit permissions ------------------------------------------------
    def _authorize_base(self, principal: Principal, base: KnowledgeBaseRecord) -> None:
        """A base belongs to the wallet that created it: only that wallet changes its
        documents or deletes it (a base made without signing in is an anonymous draft)."""
        self.owners.require_address(principal, base.owner_address, f"knowledge base '{base.name}'")

    # ----- knowledge bases ---------------------------------------------------------------
    def create_base(
        self, name: str, description: str = "", principal: Principal = ANONYMOUS
    ) -> KnowledgeBaseView:
        """A new, empty base owned by ``principal``'s wallet (if signed in)."""
        self.owners.require_creator(principal)
        name = (name or "").strip()
        if not name:
            raise ValidationError("a knowledge base needs a name")
        if len(name) > 200:
            raise ValidationError("a knowledge base name has at most 200 characters")
        record = KnowledgeBaseRecord(
            id=uuid.uuid4().hex,
            name=name,
            description=(description or "").strip()[:5000],
            embedding_model=self.settings.knowledge_embedding_model,
            owner_address=principal.address,
        )
        with self.db.session() as s:
            s.add(record)
        return self.get_base(record.id)

    def list_bases(self) -> list[KnowledgeBaseView]:
        with self.db.session() as s:
            rows = s.scalars(select(KnowledgeBaseRecord).order_by(KnowledgeBaseRecord.created_at))
            return [self._base_view(s, r) for r in rows.all()]

    def get_base(self, kb_id: str) -> KnowledgeBaseView:
        with self.db.session() as s:
            return self._base_view(s, self._base(s, kb_id))

    def delete_base(self, kb_id: str, principal: Principal = ANONYMOUS) -> None:
        """Delete a base with its documents; agents that used it simply stop using it."""
        with self.db.session() as s:
            self._authorize_base(principal, self._base(s, kb_id))
        self.jobs.cancel_for_target(TARGET_TYPE, kb_id, "the knowledge base was deleted")
        with self.db.session() as s:
            s.delete(self._base(s, kb_id))
            s.execute(delete(IndexVersionRecord).where(IndexVersionRecord.kb_id == kb_id))
        self._drop_stores(kb_id)

    # ----- agents <-> bases ----------------------------------------------------------------
    def attach(
        self, agent_id: str, kb_id: str, principal: Principal = ANONYMOUS
    ) -> list[KnowledgeBaseView]:
        """The agent's owner lets it answer from a base (any base: bases are readable)."""
        self.owners.require_owner(principal, agent_id)
        with self.db.session() as s:
            self._base(s, kb_id)
            if s.get(AgentKnowledgeRecord, (agent_id, kb_id)) is None:
                s.add(AgentKnowledgeRecord(agent_id=agent_id, kb_id=kb_id))
        return self.bases_for_agent(agent_id)

    def detach(
        self, agent_id: str, kb_id: str, principal: Principal = ANONYMOUS
    ) -> list[KnowledgeBaseView]:
        self.owners.require_owner(principal, agent_id)
        with self.db.session() as s:
            link = s.get(AgentKnowledgeRecord, (agent_id, kb_id)) if is_safe_id(kb_id) else None
            if link is None:
                raise NotFoundError(f"agent {agent_id!r} does not use knowledge base {kb_id!r}")
            s.delete(link)
        return self.bases_for_agent(agent_id)

    def bases_for_agent(self, agent_id: str) -> list[KnowledgeBaseView]:
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(KnowledgeBaseRecord)
                .join(AgentKnowledgeRecord, AgentKnowledgeRecord.kb_id == KnowledgeBaseRecord.id)
                .where(AgentKnowledgeRecord.agent_id == agent_id)
                .order_by(AgentKnowledgeRecord.created_at)
            )
            return [self._base_view(s, r) for r in rows.all()]

    # ----- documents ----------------------------------------------------------------------
    def add_document(
        self,
        kb_id: str,
        filename: str | None,
        content: bytes,
        principal: Principal = ANONYMOUS,
    ) -> UploadResult:
        """Parse and queue a file for indexing; the same bytes twice add nothing.

        Raises ``DocumentError`` (422) / ``UnsupportedDocumentType`` (415) /
        ``UploadTooLargeError`` (413) naming the file; nothing is stored then.
        """
        name = clean_filename(filename)
        with self.db.session() as s:
            base = self._base(s, kb_id)
            self._authorize_base(principal, base)
            self._check_model(s, base)
        limit = self.settings.knowledge_max_upload_bytes
        if len(content) > limit:
            raise UploadTooLargeError(
                f"{name}: the file is {len(content) / 1e6:.1f} MB; the limit is "
                f"{limit / 1e6:.1f} MB (ANIMA_KNOWLEDGE_MAX_UPLOAD_MB)"
            )
        parsed = parse_document(name, content)
        digest = hashlib.sha256(content).hexdigest()

        with self.db.session() as s:
            duplicate = self._duplicate(s, kb_id, digest)
            if duplicate is not None:
                return UploadResult(
                    document=_doc_view(duplicate),
                    job=self._job(duplicate.job_id) if duplicate.status != "ready" else None,
                    duplicate=True,
                )
        version = uuid.uuid4().hex
        self._write_parsed(kb_id, version, parsed)
        try:
            document_id, superseded = self._record_version(
                kb_id, version, parsed, digest, len(content)
            )
        except BaseException:
            self._remove_files(kb_id, version)
            raise
        for old_job in superseded:
            self._cancel_quietly(old_job, "replaced by a newer upload of the same file")
        try:
            job = self.jobs.submit(
                INGEST_JOB,
                {"kb_id": kb_id, "document_id": document_id, "version": version},
                target_type=TARGET_TYPE,
                target_id=kb_id,
                idempotency_key=f"{INGEST_JOB}:{version}",
            )
        except Exception as exc:
            self.drop_version(version, f"could not start indexing: {exc}")
            raise
        with self.db.session() as s:
            row = s.get(IndexVersionRecord, version)
            if row is not None:
                row.job_id = job.id
            doc = s.get(DocumentRecord, document_id)
            if doc is not None and row is not None and row.status == "writing":
                doc.job_id = job.id
            view = _doc_view(doc) if doc is not None else None
        if view is None:
            raise NotFoundError(f"{name}: the document was deleted while it was being added")
        return UploadResult(document=view, job=job, duplicate=False)

    def list_documents(self, kb_id: str) -> list[DocumentView]:
        with self.db.session() as s:
            self._base(s, kb_id)
            rows = s.scalars(
                select(DocumentRecord)
                .where(DocumentRecord.kb_id == kb_id)
                .order_by(DocumentRecord.created_at)
            ).all()
        self._settle([r for r in rows if r.status in ("indexing", "updating")])
        with self.db.session() as s:
            rows = s.scalars(
                select(DocumentRecord)
                .where(DocumentRecord.kb_id == kb_id)
                .order_by(DocumentRecord.created_at)
            ).all()
            return [_doc_view(r) for r in rows]

    def get_document(self, kb_id: str, document_id: str) -> DocumentView:
        with self.db.session() as s:
            row = self._document(s, kb_id, document_id)
        if row.status in ("indexing", "updating"):
            self._settle([row])
        with self.db.session() as s:
            return _doc_view(self._document(s, kb_id, document_id))

    def delete_document(
        self, kb_id: str, document_id: str, principal: Principal = ANONYMOUS
    ) -> None:
        """Unsearchable at once (one transaction); its chunks are then purged from the stores."""
        with self.db.session() as s:
            self._authorize_base(principal, self._base(s, kb_id))
            doc = self._document(s, kb_id, document_id)
            versions = s.scalars(
                select(IndexVersionRecord).where(IndexVersionRecord.document_id == doc.id)
            ).all()
            jobs = [v.job_id for v in versions if v.status == "writing" and v.job_id]
            for v in versions:
                v.status = "retired" if v.status == "active" else "dropped"
            s.delete(doc)
        for job_id in jobs:
            self._cancel_quietly(job_id, "the document was deleted")
        self.purge_versions(kb_id, quiet=True)

    # ----- search ------------------------------------------------------------------------
    def search(
        self,
        kb_ids: Sequence[str],
        query: str,
        k: int | None = None,
        mode: str | None = None,
        min_score: float | None = None,
    ) -> Retrieval:
        query = (query or "").strip()
        if not query:
            raise ValidationError("the search query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise ValidationError(f"the search query is longer than {MAX_QUERY_CHARS} characters")
        k = self.settings.knowledge_top_k if k is None else k
        if not 1 <= k <= MAX_K:
            raise ValidationError(f"k must be between 1 and {MAX_K}")
        mode = mode or self.settings.knowledge_retrieval
        if mode not in ("hybrid", "dense"):
            raise ValidationError("mode must be 'hybrid' or 'dense'")
        floor = self.settings.knowledge_min_score if min_score is None else min_score
        with self.db.session() as s:
            for kb_id in kb_ids:
                self._check_model(s, self._base(s, kb_id))
        return retrieve(
            query=query,
            kb_ids=list(kb_ids),
            k=k,
            mode=mode,
            min_score=floor,
            rrf_k=self.settings.knowledge_rrf_k,
            embedder=self.embedder,
            store=self.store,
            keywords=self.keywords,
            active=self._active_versions,
            hidden=self._hidden_versions,
        )

    def search_base(
        self,
        kb_id: str,
        query: str,
        k: int | None = None,
        mode: str | None = None,
        min_score: float | None = None,
    ) -> list[SearchHit]:
        return [_search_hit(h) for h in self.search([kb_id], query, k, mode, min_score).hits]

    def search_for_agent(
        self, agent_id: str, query: str, k: int | None = None, mode: str | None = None
    ) -> list[SearchHit]:
        """What a reply of this agent would be grounded on (the studio's "try a query")."""
        grounding = self.ground(agent_id, query, k=k, mode=mode)
        return grounding.hits if grounding is not None else []

    # ----- grounding replies --------------------------------------------------------------
    def ground(
        self, agent_id: str, query: str, k: int | None = None, mode: str | None = None
    ) -> Grounding | None:
        """Retrieve for a reply of ``agent_id``; None when the agent uses no knowledge base."""
        with self.db.session() as s:
            kb_ids = list(
                s.scalars(
                    select(AgentKnowledgeRecord.kb_id)
                    .where(AgentKnowledgeRecord.agent_id == agent_id)
                    .order_by(AgentKnowledgeRecord.created_at)
                )
            )
        if not kb_ids or not query.strip():
            return None
        result = self.search(kb_ids, query[-MAX_QUERY_CHARS:], k=k, mode=mode)
        return Grounding(
            query=result.query,
            mode=result.mode,
            kb_ids=result.kb_ids,
            hits=[_search_hit(h) for h in result.hits],
        )

    def record_trace(self, message_id: str, grounding: Grounding, used: int | None = None) -> None:
        """Store what a stored reply was grounded on (the chunks in its prompt, scored)."""
        hits = grounding.hits if used is None else grounding.hits[:used]
        trace = [
            {
                "marker": n,
                "chunk_id": h.chunk_id,
                "kb_id": h.kb_id,
                "document_id": h.document_id,
                "document": h.document,
                "page": h.page,
                "score": h.score,
                "similarity": h.similarity,
                "dense_rank": h.dense_rank,
                "keyword_rank": h.keyword_rank,
                "found_by": h.found_by,
                "snippet": _snippet(h.text),
            }
            for n, h in enumerate(hits, start=1)
        ]
        with self.db.session() as s:
            s.add(
                RetrievalTraceRecord(
                    id=uuid.uuid4().hex,
                    message_id=message_id,
                    query=grounding.query,
                    mode=grounding.mode,
                    kb_ids=grounding.kb_ids,
                    hits=trace,
                )
            )

    def trace(self, message_id: str) -> TraceView:
        """The latest retrieval trace of a message (a regenerated reply has its own)."""
        found = self.traces([message_id]).get(message_id)
        if found is None:
            raise NotFoundError(f"message {message_id!r} has no retrieval trace")
        return found

    def traces(self, message_ids: Sequence[str]) -> dict[str, TraceView]:
        if not message_ids:
            return {}
        with self.db.session() as s:
            rows = s.scalars(
                select(RetrievalTraceRecord)
                .where(RetrievalTraceRecord.message_id.in_(list(message_ids)))
                .order_by(RetrievalTraceRecord.created_at)
            ).all()
        out: dict[str, TraceView] = {}
        for r in rows:  # oldest first: the latest wins
            out[r.message_id] = TraceView(
                message_id=r.message_id,
                query=r.query,
                mode=r.mode,
                kb_ids=list(r.kb_ids or []),
                hits=list(r.hits or []),
                created_at=r.created_at,
            )
        return out

    # ----- ingestion steps (called by the job in knowledge/jobs.py) ----------------------------
    def prepare_chunks(self, kb_id: str, version: str) -> int:
        """Chunk the version's text into ``<version>.chunks.json``; returns the chunk count."""
        row = self._writing_version(version)
        parsed = json.loads(self._parsed_path(kb_id, version).read_text(encoding="utf-8"))
        sections = [Section(s["page"], s["text"]) for s in parsed["sections"]]
        chunks = chunk_records(
            sections,
            row.filename,
            self.embedder.count_tokens,
            self.settings.knowledge_chunk_tokens,
            self.settings.knowledge_chunk_overlap,
        )
        atomic_write(
            self._chunks_path(kb_id, version),
            json.dumps(
                {"filename": row.filename, "document_id": row.document_id, "chunks": chunks}
            ).encode(),
        )
        return len(chunks)

    def write_vectors(self, kb_id: str, version: str, start: int, count: int) -> int:
        """Embed and upsert chunks ``start``..``start+count`` (safe to repeat)."""
        self._writing_version(version)
        chunks = self._chunks(kb_id, version)[start : start + count]
        self.store.upsert(kb_id, chunks)
        try:
            self._writing_version(version)
        except TargetGone:
            # Dropped (cancelled, replaced, deleted) while this batch was being written: a
            # purge may already have run, so what this batch wrote goes now.
            self.store.delete_version(kb_id, version)
            raise
        return len(chunks)

    def write_keywords(self, kb_id: str, version: str) -> int:
        """Index every chunk of the version in the keyword index, in one commit."""
        self._writing_version(version)
        chunks = self._chunks(kb_id, version)
        self.keywords.add(kb_id, chunks)
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
        self._writing_version(version)
        expected = len(self._chunks(kb_id, version))
        in_store = self.store.count(kb_id, version)
        in_index = self.keywords.count(kb_id, version)
        if in_store != expected or in_index != expected:
            raise RuntimeError(
                f"version {version} is incomplete: {in_store}/{expected} chunks in Chroma, "
                f"{in_index}/{expected} in the keyword index"
            )
        with self.db.session() as s:
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
            row.chunk_count = expected
            doc.active_version = version
            doc.status = "ready"
            doc.filename = row.filename
            doc.media_type = row.media_type
            doc.content_hash = row.content_hash
            doc.size_bytes = row.size_bytes
            doc.pages = row.pages
            doc.chunk_count = expected
            doc.error = None
            doc.updated_at = utcnow()
            base = s.get(KnowledgeBaseRecord, kb_id)
            if base is not None:
                base.updated_at = utcnow()
        self._chunks_path(kb_id, version).unlink(missing_ok=True)
        return old

    def drop_version(self, version: str, reason: str, by_job: bool = False) -> None:
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
            self.purge_versions(kb_id, quiet=True, ended=version if by_job else None)
        else:
            self._drop_stores(kb_id)

    def purge_versions(self, kb_id: str, quiet: bool = False, ended: str | None = None) -> int:
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
                self.store.delete_version(kb_id, version.id)
                self.keywords.delete_version(kb_id, version.id)
            except Exception as exc:
                if not quiet:
                    raise
                log.warning("could not purge version %s yet (%s); it stays hidden", version.id, exc)
                continue
            purged += 1
            done = version.status == "retired" or version.id == ended
            if not (done or self._job_ended(version.job_id)):
                continue
            self._remove_files(kb_id, version.id)
            with self.db.session() as s:
                s.execute(delete(IndexVersionRecord).where(IndexVersionRecord.id == version.id))
        return purged

    def _job_ended(self, job_id: str | None) -> bool:
        if job_id is None:
            return True
        try:
            return self.jobs.get(job_id).finished
        except NotFoundError:
            return True

    # ----- internals -----------------------------------------------------------------------
    def _record_version(
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
                        doc = DocumentRecord(
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
                        s.add(doc)
                    else:
                        pending = s.scalars(
                            select(IndexVersionRecord).where(
                                IndexVersionRecord.document_id == doc.id,
                                IndexVersionRecord.status == "writing",
                            )
                        ).all()
                        for old in pending:
                            old.status = "dropped"
                            if old.job_id:
                                superseded.append(old.job_id)
                        doc.status = "updating" if doc.active_version else "indexing"
                        doc.error = None
                        doc.updated_at = utcnow()
                    s.add(
                        IndexVersionRecord(
                            id=version,
                            kb_id=kb_id,
                            document_id=doc.id,
                            filename=parsed.filename,
                            media_type=parsed.media_type,
                            content_hash=digest,
                            size_bytes=size,
                            pages=parsed.pages,
                            status="writing",
                            chunk_count=0,
                        )
                    )
                    return doc.id, superseded
            except IntegrityError:  # the same new name uploaded twice at once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _duplicate(self, session: Any, kb_id: str, digest: str) -> DocumentRecord | None:
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

    def _settle(self, docs: Sequence[DocumentRecord]) -> None:
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
                    job = self.jobs.get(version.job_id)
                except NotFoundError:
                    self.drop_version(version.id, "its indexing job was lost")
                    continue
                if job.status in FINISHED and job.status != "succeeded":
                    self.drop_version(version.id, job.error or f"indexing {job.status}")

    def _active_versions(self, versions: set[str]) -> set[str]:
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

    def _hidden_versions(self, kb_id: str) -> set[str]:
        """Versions of a base that may have chunks in the stores but are not searchable."""
        with self.db.session() as s:
            return set(
                s.scalars(
                    select(IndexVersionRecord.id).where(
                        IndexVersionRecord.kb_id == kb_id, IndexVersionRecord.status != "active"
                    )
                )
            )

    def _writing_version(self, version: str) -> IndexVersionRecord:
        with self.db.session() as s:
            row = s.get(IndexVersionRecord, version)
            if row is None or row.status != "writing":
                raise TargetGone("the document was replaced or deleted while it was indexed")
            if s.get(KnowledgeBaseRecord, row.kb_id) is None:
                raise TargetGone("the knowledge base was deleted")
            return row

    def _chunks(self, kb_id: str, version: str) -> list[Chunk]:
        data = json.loads(self._chunks_path(kb_id, version).read_text(encoding="utf-8"))
        return [
            Chunk(
                id=f"{version}:{c['position']}",
                kb_id=kb_id,
                document_id=data["document_id"],
                version=version,
                filename=data["filename"],
                page=c["page"],
                position=c["position"],
                text=c["text"],
                context=c.get("context", ""),
            )
            for c in data["chunks"]
        ]

    def _files_dir(self, kb_id: str) -> Path:
        return self.settings.knowledge_dir / "files" / check_id(kb_id, "knowledge base id")

    def _parsed_path(self, kb_id: str, version: str) -> Path:
        return self._files_dir(kb_id) / f"{check_id(version, 'version')}.json"

    def _chunks_path(self, kb_id: str, version: str) -> Path:
        return self._files_dir(kb_id) / f"{check_id(version, 'version')}.chunks.json"

    def _write_parsed(self, kb_id: str, version: str, parsed: ParsedDocument) -> None:
        payload = {
            "filename": parsed.filename,
            "media_type": parsed.media_type,
            "pages": parsed.pages,
            "sections": [{"page": s.page, "text": s.text} for s in parsed.sections],
        }
        atomic_write(self._parsed_path(kb_id, version), json.dumps(payload).encode())

    def _remove_files(self, kb_id: str, version: str) -> None:
        self._parsed_path(kb_id, version).unlink(missing_ok=True)
        self._chunks_path(kb_id, version).unlink(missing_ok=True)

    def _drop_stores(self, kb_id: str) -> None:
        for what, drop in (("Chroma", self.store.drop), ("keyword index", self.keywords.drop)):
            try:
                drop(kb_id)
            except Exception as exc:  # left behind, unreachable: no row points at it
                log.warning("could not remove knowledge base %s from the %s: %s", kb_id, what, exc)
        shutil.rmtree(self._files_dir(kb_id), ignore_errors=True)

    def _cancel_quietly(self, job_id: str, reason: str) -> None:
        with contextlib.suppress(AnimaError):  # already finished or unknown
            self.jobs.cancel(job_id, reason=reason)

    def _job(self, job_id: str | None) -> JobView | None:
        if job_id is None:
            return None
        try:
            return self.jobs.get(job_id)
        except NotFoundError:
            return None

    def _check_model(self, session: Any, base: KnowledgeBaseRecord) -> None:
        """Vectors of two models cannot be compared: refuse to mix them in one base."""
        current = self.settings.knowledge_embedding_model
        if base.embedding_model == current:
            return
        documents = session.scalar(
            select(func.count()).select_from(DocumentRecord).where(DocumentRecord.kb_id == base.id)
        )
        if documents:
            raise ConflictError(
                f"knowledge base '{base.name}' was indexed with the embedding model "
                f"{base.embedding_model!r}, but ANIMA_KNOWLEDGE_EMBEDDING_MODEL is {current!r}; "
                "switch the setting back or create a new base and upload the documents again"
            )
        base.embedding_model = current

    @staticmethod
    def _base(session: Any, kb_id: str) -> KnowledgeBaseRecord:
        row = session.get(KnowledgeBaseRecord, kb_id) if is_safe_id(kb_id) else None
        if row is None:
            raise NotFoundError(f"no knowledge base with id {kb_id!r}")
        return row

    @staticmethod
    def _document(session: Any, kb_id: str, document_id: str) -> DocumentRecord:
        row = session.get(DocumentRecord, document_id) if is_safe_id(document_id) else None
        if row is None or row.kb_id != kb_id:
            raise NotFoundError(f"no document with id {document_id!r} in this knowledge base")
        return row

    @staticmethod
    def _agents_of(session: Any, kb_id: str) -> list[str]:
        return list(
            session.scalars(
                select(AgentKnowledgeRecord.agent_id).where(AgentKnowledgeRecord.kb_id == kb_id)
            )
        )

    def _base_view(self, session: Any, row: KnowledgeBaseRecord) -> KnowledgeBaseView:
        documents, chunks = session.execute(
            select(func.count(), func.coalesce(func.sum(DocumentRecord.chunk_count), 0)).where(
                DocumentRecord.kb_id == row.id
            )
        ).one()
        return KnowledgeBaseView(
            id=row.id,
            name=row.name,
            description=row.description,
            embedding_model=row.embedding_model,
            document_count=int(documents),
            chunk_count=int(chunks),
            agent_ids=self._agents_of(session, row.id),
            owner_address=row.owner_address,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def _doc_view(row: DocumentRecord) -> DocumentView:
    return DocumentView(
        id=row.id,
        kb_id=row.kb_id,
        filename=row.filename,
        media_type=row.media_type,
        content_hash=row.content_hash,
        size_bytes=row.size_bytes,
        pages=row.pages,
        status=row.status,
        chunk_count=row.chunk_count,
        job_id=row.job_id,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _search_hit(hit: Hit) -> SearchHit:
    c = hit.chunk
    return SearchHit(
        chunk_id=c.id,
        kb_id=c.kb_id,
        document_id=c.document_id,
        document=c.filename,
        page=c.page,
        position=c.position,
        text=hit.text,
        score=hit.score,
        similarity=hit.similarity,
        dense_rank=hit.dense_rank,
        keyword_rank=hit.keyword_rank,
        found_by=list(hit.found_by),
    )


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"
