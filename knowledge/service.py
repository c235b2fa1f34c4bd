"""Knowledge bases: create, fill, search, share between agents; ground replies with citations.

The API and the studio both call this one service; it holds no logic of its own but who may
do what, and hands each call to the part that does it:

- ``knowledge/bases.py``: bases and which agents use them;
- ``knowledge/documents.py``: uploads, listing and deleting documents;
- ``knowledge/ingest.py``: the steps of the ingest job (``knowledge/jobs.py``);
- ``knowledge/versions.py``: versions (one ingest of one file) and purging old ones;
- ``knowledge/reindex.py``: re-indexing a base to the current chunking (a background job);
- ``knowledge/grounding.py``: search, grounding a reply, retrieval traces;
- ``knowledge/schema.py``: the views all of them return.

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

Who may do what: every method that changes something takes the caller as the keyword-only
``principal`` and checks it through the injected ``OwnerCheck`` (the base's owner for its
documents, the agent's owner for what the agent uses). Bases, their documents and searches are
readable by everyone, so reads take no caller. The ingest steps and ``record_trace`` are the
app's own bookkeeping for work already allowed (an upload, a stored reply).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.db import Database
from core.jobs import JobService, JobView
from core.principal import OwnerCheck, Principal
from core.settings import Settings
from knowledge.base import Embedder, KeywordIndex, VectorStore
from knowledge.bases import TARGET_TYPE, AgentLookup, Bases
from knowledge.documents import INGEST_JOB, Documents
from knowledge.files import VersionFiles
from knowledge.grounding import MAX_K, MAX_QUERY_CHARS, KnowledgeSearch
from knowledge.ingest import Ingestion
from knowledge.reindex import Reindexing
from knowledge.retrieval import Retrieval
from knowledge.schema import (
    SNIPPET_CHARS,
    DocumentView,
    Grounding,
    KnowledgeBaseView,
    SearchHit,
    Source,
    TraceView,
    UploadResult,
)
from knowledge.stores import KnowledgeStores
from knowledge.versions import Versions


class KnowledgeService:
    """Knowledge bases, their documents, search, agent links and retrieval traces.

    Implements ``agents.grounding.Grounder`` (``ground``, ``record_trace``) for the chat.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        agents: AgentLookup,
        jobs: JobService,
        owners: OwnerCheck,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.jobs = jobs
        self.owners = owners
        self.stores = KnowledgeStores(settings, embedder)
        files = VersionFiles(settings)
        self.versions = Versions(db, jobs, self.stores, files)
        self.bases = Bases(settings, db, agents, jobs, owners, self.versions)
        self.documents = Documents(settings, db, jobs, owners, files, self.versions)
        self.ingestion = Ingestion(settings, db, self.stores, files, self.versions)
        self.reindexing = Reindexing(
            settings, db, jobs, owners, files, self.versions, self.ingestion
        )
        self.grounding = KnowledgeSearch(settings, db, self.stores, self.versions, self.bases)

    # ----- components (built on first use: a process that never searches loads nothing) -----
    @property
    def embedder(self) -> Embedder:
        return self.stores.embedder

    @property
    def store(self) -> VectorStore:
        return self.stores.store

    @property
    def keywords(self) -> KeywordIndex:
        return self.stores.keywords

    def close(self) -> None:
        self.stores.close()

    # ----- knowledge bases ---------------------------------------------------------------
    def create_base(
        self, name: str, description: str = "", *, principal: Principal
    ) -> KnowledgeBaseView:
        """A new, empty base owned by ``principal``'s wallet (if signed in)."""
        return self.bases.create(name, description, principal=principal)

    def create_base_for_agent(
        self, agent_id: str, name: str, description: str = "", *, principal: Principal
    ) -> KnowledgeBaseView:
        """A new base the agent uses at once (only the agent's owner may)."""
        return self.bases.create_for_agent(agent_id, name, description, principal=principal)

    def list_bases(self) -> list[KnowledgeBaseView]:
        return self.bases.list_all()

    def get_base(self, kb_id: str) -> KnowledgeBaseView:
        return self.bases.get(kb_id)

    def delete_base(self, kb_id: str, *, principal: Principal) -> None:
        """Delete a base with its documents (only its owner may); agents stop using it."""
        self.bases.delete(kb_id, principal=principal)

    # ----- agents <-> bases ----------------------------------------------------------------
    def attach(self, agent_id: str, kb_id: str, *, principal: Principal) -> list[KnowledgeBaseView]:
        """The agent's owner lets it answer from a base (any base: bases are readable)."""
        return self.bases.attach(agent_id, kb_id, principal=principal)

    def detach(self, agent_id: str, kb_id: str, *, principal: Principal) -> list[KnowledgeBaseView]:
        return self.bases.detach(agent_id, kb_id, principal=principal)

    def bases_for_agent(self, agent_id: str) -> list[KnowledgeBaseView]:
        return self.bases.for_agent(agent_id)

    def reindex_base(self, kb_id: str, *, principal: Principal) -> JobView:
        """Re-cut the base's stale documents with the current chunking in a background job
        (only its owner may); searches answer from the old index until the job is done."""
        return self.reindexing.start(kb_id, principal=principal)

    # ----- documents ----------------------------------------------------------------------
    def add_document(
        self, kb_id: str, filename: str | None, content: bytes, *, principal: Principal
    ) -> UploadResult:
        """Parse and queue a file for indexing (only the base's owner may); see ``Documents``."""
        return self.documents.add(kb_id, filename, content, principal=principal)

    def list_documents(self, kb_id: str) -> list[DocumentView]:
        return self.documents.list_all(kb_id)

    def get_document(self, kb_id: str, document_id: str) -> DocumentView:
        return self.documents.get(kb_id, document_id)

    def delete_document(self, kb_id: str, document_id: str, *, principal: Principal) -> None:
        """Unsearchable at once (only the base's owner may delete it)."""
        self.documents.delete(kb_id, document_id, principal=principal)

    # ----- search and grounding ------------------------------------------------------------
    def search(
        self,
        kb_ids: Sequence[str],
        query: str,
        k: int | None = None,
        mode: str | None = None,
        min_score: float | None = None,
    ) -> Retrieval:
        return self.grounding.search(kb_ids, query, k, mode, min_score)

    def search_base(
        self,
        kb_id: str,
        query: str,
        k: int | None = None,
        mode: str | None = None,
        min_score: float | None = None,
    ) -> list[SearchHit]:
        return self.grounding.search_base(kb_id, query, k, mode, min_score)

    def search_for_agent(
        self, agent_id: str, query: str, k: int | None = None, mode: str | None = None
    ) -> list[SearchHit]:
        """What a reply of this agent would be grounded on (the studio's "try a query")."""
        return self.grounding.search_for_agent(agent_id, query, k, mode)

    def ground(
        self, agent_id: str, query: str, k: int | None = None, mode: str | None = None
    ) -> Grounding | None:
        """Retrieve for a reply of ``agent_id``; None when the agent uses no knowledge base."""
        return self.grounding.ground(agent_id, query, k, mode)

    def record_trace(self, message_id: str, grounding: Grounding, used: int | None = None) -> None:
        self.grounding.record_trace(message_id, grounding, used)

    def trace(self, message_id: str) -> TraceView:
        return self.grounding.trace(message_id)

    def traces(self, message_ids: Sequence[str]) -> dict[str, TraceView]:
        return self.grounding.traces(message_ids)

    # ----- ingestion and re-index steps (called by the jobs in knowledge/jobs.py) -------------
    def prepare_chunks(self, kb_id: str, version: str) -> int:
        return self.ingestion.prepare_chunks(kb_id, version)

    def write_vectors(self, kb_id: str, version: str, start: int, count: int) -> int:
        return self.ingestion.write_vectors(kb_id, version, start, count)

    def write_keywords(self, kb_id: str, version: str) -> int:
        return self.ingestion.write_keywords(kb_id, version)

    def activate_version(self, kb_id: str, document_id: str, version: str) -> str | None:
        return self.ingestion.activate_version(kb_id, document_id, version)

    def plan_reindex(self, kb_id: str, job_id: str) -> list[list[str]]:
        return self.reindexing.plan(kb_id, job_id)

    def reindex_chunks(self, kb_id: str, version: str) -> int:
        return self.reindexing.chunk(kb_id, version)

    def reindex_vectors(self, kb_id: str, version: str, start: int, count: int) -> int:
        return self.reindexing.vectors(kb_id, version, start, count)

    def reindex_keywords(self, kb_id: str, version: str) -> int:
        return self.reindexing.keywords(kb_id, version)

    def activate_reindex(self, kb_id: str, plan: list[list[str]]) -> int:
        return self.reindexing.activate(kb_id, plan)

    def drop_reindex(self, plan: list[list[str]], reason: str) -> None:
        self.reindexing.drop(plan, reason)

    def drop_version(self, version: str, reason: str, by_job: bool = False) -> None:
        self.versions.drop(version, reason, by_job)

    def purge_versions(self, kb_id: str, quiet: bool = False, ended: str | None = None) -> int:
        return self.versions.purge(kb_id, quiet, ended)


__all__ = [
    "INGEST_JOB",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "SNIPPET_CHARS",
    "TARGET_TYPE",
    "DocumentView",
    "Grounding",
    "KnowledgeBaseView",
    "KnowledgeService",
    "SearchHit",
    "Source",
    "TraceView",
    "UploadResult",
]
