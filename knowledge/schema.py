"""What the knowledge layer hands out: the views the API returns and the studio shows.

Pydantic models only, built from records or retrieval hits by the functions at the bottom;
no database access here. ``Source`` (a citation under a reply) is defined by ``agents`` (the
side that shows it) and re-exported.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agents.grounding import Source
from core.db import UTCDateTime
from core.jobs import JobView
from knowledge.records import DocumentRecord
from knowledge.retrieval import Hit

SNIPPET_CHARS = 240


class KnowledgeBaseView(BaseModel):
    id: str
    name: str
    description: str
    embedding_model: str
    document_count: int
    chunk_count: int
    agent_ids: list[str]
    stale_documents: int = Field(
        default=0,
        description="Documents indexed with an older chunking: POST .../reindex re-cuts them.",
    )
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


class TraceView(BaseModel):
    message_id: str
    query: str
    mode: str
    kb_ids: list[str]
    hits: list[dict[str, Any]]
    created_at: UTCDateTime


class Grounding(BaseModel):
    """What retrieval found for one reply: prompt blocks, sources and the trace to store.

    Satisfies ``agents.grounding.Grounding``."""

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
                snippet=snippet(h.text),
                kb_id=h.kb_id,
                document_id=h.document_id,
                chunk_id=h.chunk_id,
                score=h.score,
            )
            for n, h in enumerate(hits, start=1)
        ]


def doc_view(row: DocumentRecord) -> DocumentView:
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


def search_hit(hit: Hit) -> SearchHit:
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


def snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


__all__ = [
    "SNIPPET_CHARS",
    "DocumentView",
    "Grounding",
    "KnowledgeBaseView",
    "SearchHit",
    "Source",
    "TraceView",
    "UploadResult",
    "doc_view",
    "search_hit",
    "snippet",
]
