"""The usage table: one row per metered request, append-only.

These rows are the ground truth a later on-chain settlement pays out on, so the schema is flat
and explicit (no JSON, no totals kept elsewhere) and rows are only ever inserted: ``id`` is the
request's own id, so writing the same request twice (a flush retried after a commit whose
answer was lost) inserts it once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


class UsageRecord(Base):
    __tablename__ = "usage_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the request id
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # Who: the API key (row id), else the wallet, else the browser's visitor id, else nobody.
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    address: Mapped[str | None] = mapped_column(String(42), nullable=True, index=True)
    visitor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    # What: "v1.chat", "v1.completions", "v1.audio.speech", "chat.send", ...
    route: Mapped[str] = mapped_column(String(32))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    # "ok", "cancelled" (the client left), or "error:<http status>" (failed mid-reply).
    outcome: Mapped[str] = mapped_column(String(16))
