"""Tables for agents, conversations and messages (SQLAlchemy 2 typed ORM).

The card's ``data`` is stored whole as JSON (exactly what the card brought, unknown keys
included) rather than spread over columns: that is what makes export lossless. Columns
outside the JSON are only the ones we query on or that are Anima's own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class AgentRecord(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    spec: Mapped[str] = mapped_column(String(32))
    card_data: Mapped[dict[str, Any]] = mapped_column(JSON)
    card_extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    content_hash: Mapped[str] = mapped_column(String(66))
    avatar_file: Mapped[str | None] = mapped_column(String(200), nullable=True)
    generation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model: Mapped[str | None] = mapped_column(String(500), nullable=True)
    adapter: Mapped[str | None] = mapped_column(String(500), nullable=True)
    owner_address: Mapped[str | None] = mapped_column(String(42), nullable=True, index=True)
    # public (listed to all) | unlisted (usable by id, not listed) | private (its owner only).
    visibility: Mapped[str] = mapped_column(
        String(16), default="public", server_default="public", index=True
    )
    # On-chain identity. The token id is uint256(keccak256(agent id)), kept as a
    # decimal string (it does not fit a 64-bit column); set when the mint is requested.
    # mint_state: None (never minted) | pending | minted | failed. The chain_* columns are the
    # follower's copy of what the contract says (the owner check reads the chain itself).
    token_id: Mapped[str | None] = mapped_column(String(78), nullable=True, index=True)
    mint_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    token_contract: Mapped[str | None] = mapped_column(String(42), nullable=True)
    chain_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    chain_card_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    chain_card_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversations: Mapped[list[ConversationRecord]] = relationship(
        back_populates="agent", cascade="all, delete-orphan", passive_deletes=True
    )


class ConversationRecord(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    user_name: Mapped[str] = mapped_column(String(100), default="User")
    # The next free message position. Taken with an UPDATE (which locks the row on
    # PostgreSQL and the database on SQLite), so concurrent sends never share a position.
    next_position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    agent: Mapped[AgentRecord] = relationship(back_populates="conversations")
    messages: Mapped[list[MessageRecord]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="MessageRecord.position",
    )


class MessageRecord(Base):
    __tablename__ = "messages"
    # One message per slot: a lost race can never store two messages at one position.
    __table_args__ = (
        Index("uq_messages_conversation_position", "conversation_id", "position", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # Earlier versions of this reply, kept when the user regenerates (SillyTavern "swipes").
    alternatives: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[ConversationRecord] = relationship(back_populates="messages")
