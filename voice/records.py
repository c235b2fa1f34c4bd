"""The voice profile table: one profile per agent.

Audio lives in files (``<agent folder>/voice/<profile folder>/``); the row holds what is
queried or shown (durations, similarity) and what proves where the voice came from: the
sha256 of the file the creator uploaded and their consent statement, with its time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agents.records import utcnow
from core.db import Base


class VoiceProfileRecord(Base):
    __tablename__ = "voice_profiles"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    folder: Mapped[str] = mapped_column(String(64))
    sample_sha256: Mapped[str] = mapped_column(String(64))
    original_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    original_rate: Mapped[int] = mapped_column(Integer)
    original_channels: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    speech_s: Mapped[float] = mapped_column(Float)
    speech_share: Mapped[float] = mapped_column(Float)
    clips: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[list[float]] = mapped_column(JSON)
    # {engine name: {"before": float | None, "after": float, "method": str}}
    similarity: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    consent: Mapped[str] = mapped_column(Text)
    consent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
