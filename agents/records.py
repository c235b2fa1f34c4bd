"""Tables for agents, conversations and messages (SQLAlchemy 2 typed ORM).

The card's ``data`` is stored whole as JSON (exactly what the card brought, unknown keys
included) rather than spread over columns: that is what makes export lossless. Columns
outside the JSON are only the ones we query on or that are Anima's own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
)
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
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )
    # What the gallery searches, filters and sorts on, kept beside the card by
    # ``agents.agent_search.search_columns``: the card's JSON cannot be searched the same way on
    # SQLite and PostgreSQL, and SQLite's lower() folds ASCII only. name_key: the casefolded
    # name; tags_text: the casefolded tags between bars ("|elf|mage|"), so one LIKE finds a tag.
    name_key: Mapped[str] = mapped_column(String(200), default="", server_default="", index=True)
    tags_text: Mapped[str] = mapped_column(Text, default="", server_default="")

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
    # A branch: the conversation it was copied from and the position it was cut after.
    parent_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    parent_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    persona_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Author's note: text put into the history ``depth`` messages from the end, every
    # ``frequency`` user turns (0: never), as SillyTavern does.
    authors_note: Mapped[str] = mapped_column(Text, default="", server_default="")
    authors_note_depth: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    authors_note_frequency: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Memory: a running summary of the messages before position ``summary_upto`` (the ones
    # that no longer fit the context). A pinned summary is the user's and is not rewritten.
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    summary_upto: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    summary_pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Group chats: who speaks next (manual | round_robin | mention).
    reply_order: Mapped[str] = mapped_column(String(16), default="manual", server_default="manual")
    # Bumped by every edit or delete, so a reply that streamed meanwhile can tell.
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Who started it (agents.conversation_access): a wallet, or an anonymous browser's visitor
    # id. Both empty: started before conversations had owners, open to all until claimed.
    owner_address: Mapped[str | None] = mapped_column(String(42), nullable=True, index=True)
    visitor_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    agent: Mapped[AgentRecord] = relationship(back_populates="conversations")
    members: Mapped[list[ConversationMemberRecord]] = relationship(
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ConversationMemberRecord.position",
    )
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
    # Every version of this message in order (SillyTavern "swipes": a greeting's are the
    # card's greetings, a reply's its generations and edits) and the one shown. ``content`` is
    # always ``versions[selected]``, kept apart so reading history needs no JSON.
    versions: Mapped[list[str]] = mapped_column(JSON, default=list)
    selected: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Pinned messages always stay in the prompt, however long the chat grows.
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # In a group chat, which agent spoke (and its name then); None for the user and 1:1 chats.
    speaker_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[ConversationRecord] = relationship(back_populates="messages")


class ConversationMemberRecord(Base):
    """An agent taking part in a group chat, in speaking order. A 1:1 chat has none (its agent
    is ``conversations.agent_id``); a group chat lists every agent, the first one included."""

    __tablename__ = "conversation_members"

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)
