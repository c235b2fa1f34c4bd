"""Search, and grounding a reply on an agent's bases: what the chat uses.

``ground`` and ``record_trace`` implement ``agents.grounding.Grounder``: the chat asks for
the passages a reply should cite and, once the reply is stored, for its retrieval trace to be
kept (the chunks its prompt held, with their scores and ranks), so a cited answer can be
checked later. Ranking itself is ``knowledge/retrieval.py``; only chunks of active versions
are ever returned (``Versions.active`` / ``Versions.hidden``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select

from core.db import Database
from core.errors import NotFoundError, ValidationError
from core.settings import Settings
from knowledge.bases import Bases, check_model, load_base
from knowledge.records import RetrievalTraceRecord
from knowledge.retrieval import Retrieval, retrieve
from knowledge.schema import Grounding, SearchHit, TraceView, search_hit, snippet
from knowledge.stores import KnowledgeStores
from knowledge.versions import Versions

MAX_QUERY_CHARS = 2000
MAX_K = 50


class KnowledgeSearch:
    """Searches bases, grounds replies and keeps their retrieval traces."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        stores: KnowledgeStores,
        versions: Versions,
        bases: Bases,
    ) -> None:
        self.settings = settings
        self.db = db
        self.stores = stores
        self.versions = versions
        self.bases = bases

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
        k = self.settings.knowledge.top_k if k is None else k
        if not 1 <= k <= MAX_K:
            raise ValidationError(f"k must be between 1 and {MAX_K}")
        mode = mode or self.settings.knowledge.retrieval
        if mode not in ("hybrid", "dense"):
            raise ValidationError("mode must be 'hybrid' or 'dense'")
        floor = self.settings.knowledge.min_score if min_score is None else min_score
        with self.db.session() as s:
            for kb_id in kb_ids:
                check_model(self.settings, s, load_base(s, kb_id))
        return retrieve(
            query=query,
            kb_ids=list(kb_ids),
            k=k,
            mode=mode,
            min_score=floor,
            rrf_k=self.settings.knowledge.rrf_k,
            embedder=self.stores.embedder,
            store=self.stores.store,
            keywords=self.stores.keywords,
            active=self.versions.active,
            hidden=self.versions.hidden,
        )

    def search_base(
        self,
        kb_id: str,
        query: str,
        k: int | None = None,
        mode: str | None = None,
        min_score: float | None = None,
    ) -> list[SearchHit]:
        return [search_hit(h) for h in self.search([kb_id], query, k, mode, min_score).hits]

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
        kb_ids = self.bases.ids_for_agent(agent_id)
        if not kb_ids or not query.strip():
            return None
        result = self.search(kb_ids, query[-MAX_QUERY_CHARS:], k=k, mode=mode)
        return Grounding(
            query=result.query,
            mode=result.mode,
            kb_ids=result.kb_ids,
            hits=[search_hit(h) for h in result.hits],
        )

    def record_trace(self, message_id: str, grounding: Grounding, used: int | None = None) -> None:
        """Store what a stored reply was grounded on (the chunks in its prompt, scored).

        No caller check: the chat calls this for a reply it has just stored, so whoever
        could send the message has already been allowed to."""
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
                "snippet": snippet(h.text),
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
