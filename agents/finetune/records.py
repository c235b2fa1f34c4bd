"""Tables for fine-tune runs, adapter versions and each agent's activation history.

The files of an adapter live in ``<data_dir>/adapters/<name>/`` (what the serving layer loads);
these rows are the index: which agent a version belongs to, how it was made and how it scored.
Activations form a stack per agent so that "roll back" can walk back through what was active
before. Every row belongs to an agent and goes with it (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agents.records import utcnow
from core.db import Base


class FinetuneRunRecord(Base):
    __tablename__ = "finetune_runs"
    __table_args__ = (UniqueConstraint("agent_id", "version", name="uq_finetune_runs_version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    # The adapter version this run will produce; reserved when the run starts.
    version: Mapped[int] = mapped_column(Integer)
    adapter_name: Mapped[str] = mapped_column(String(100), unique=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    stage: Mapped[str] = mapped_column(String(16), default="queued")
    base_model: Mapped[str] = mapped_column(String(500))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdapterRecord(Base):
    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("agent_id", "version", name="uq_adapters_version"),)

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))  # "trained" | "imported"
    run_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    base_model: Mapped[str] = mapped_column(String(500))
    base_model_name: Mapped[str] = mapped_column(String(200))
    base_fingerprint: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    eval: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdapterActivationRecord(Base):
    """One activation: ``adapter_name`` None means the agent went back to the base model."""

    __tablename__ = "adapter_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    adapter_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
