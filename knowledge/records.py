"""Tables of the knowledge layer: bases, documents, index versions, agent links, traces.

The SQL database is the one truth about what is searchable. Chroma and the keyword index hold
chunks tagged with the *version* (one ingest of one file) they came from, and a chunk counts
only while its version is the active version of a document here. Switching a document to a
new version is one transaction, so a search sees the old chunks or the new ones, never a mix,
and chunks a crash left behind stay invisible until they are purged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class KnowledgeBaseRecord(Base):
    __tablename__ = "knowledge_bases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # The embedding model its vectors came from: vectors of two models cannot be compared.
    embedding_model: Mapped[str] = mapped_column(String(500))
    # The wallet that created it (None: created without signing in); only it may change it.
    owner_address: Mapped[str | None] = mapped_column(String(42), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DocumentRecord(Base):
    """A file in a knowledge base, known by its name; its searchable chunks are
    ``active_version``'s."""

    __tablename__ = "kb_documents"
    __table_args__ = (UniqueConstraint("kb_id", "filename", name="uq_kb_documents_kb_filename"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kb_id: Mapped[str] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(Integer)
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # indexing (first version being written), ready, updating (a new version being written
    # while the old one stays searchable), failed (nothing searchable; see error)
    status: Mapped[str] = mapped_column(String(16))
    active_version: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IndexVersionRecord(Base):
    """One ingest of one file: what may exist in the stores under this version id.

    No foreign keys on purpose: a version outlives its document's row until its chunks are
    purged from Chroma and the keyword index, which is what this row is kept for.
    """

    __tablename__ = "kb_versions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kb_id: Mapped[str] = mapped_column(String(36), index=True)
    document_id: Mapped[str] = mapped_column(String(36), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    content_hash: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # writing -> active -> retired (replaced or deleted); writing -> dropped (failed/cancelled)
    status: Mapped[str] = mapped_column(String(16), index=True)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # How its chunks were cut (``knowledge/reindex.py``'s ``index_signature``), stamped when
    # they are: a base whose active versions were cut another way is offered a re-index.
    # Empty: indexed before this was recorded.
    chunking: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AgentKnowledgeRecord(Base):
    """Which agents use which knowledge bases (many to many)."""

    __tablename__ = "agent_knowledge_bases"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    kb_id: Mapped[str] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RetrievalTraceRecord(Base):
    """What a reply was grounded on: the query, the chunks and their scores."""

    __tablename__ = "retrieval_traces"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    query: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16))
    kb_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    hits: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
