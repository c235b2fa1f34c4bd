"""Tables of the on-chain identity: sign-in nonces, sessions, API keys, sent transactions and
the event follower's position.

Secrets are never stored: a session row is keyed by the SHA-256 of its cookie and an API key
row holds the SHA-256 of the key (both are 256-bit random values, so a fast hash is enough; a
slow password hash would only cost time on every request). A transaction is recorded (signed
bytes, hash, nonce) before it is sent, so a job that dies mid-send re-broadcasts the same
bytes instead of signing a second transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class NonceRecord(Base):
    """A SIWE nonce: usable once, until ``expires_at``."""

    __tablename__ = "auth_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str | None] = mapped_column(String(42), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SessionRecord(Base):
    """A signed-in browser session; ``id`` is the SHA-256 (hex) of the cookie value."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), index=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    wallet: Mapped[str] = mapped_column(String(16))  # "browser" (SIWE) or "local"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ApiKeyRecord(Base):
    """An API key acting for ``address``; only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(42), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # What the key may do and how much. Old keys (made before scopes existed) keep every
    # scope and no limit, which is what they could do then. ``None`` limits mean unlimited;
    # ``allowed_agents`` ``None`` means every agent the wallet may use.
    scopes: Mapped[str] = mapped_column(
        String(64), default="chat,manage,admin", server_default="chat,manage,admin"
    )
    allowed_agents: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_streams: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    budget_period: Mapped[str | None] = mapped_column(String(8), nullable=True)  # day | month


class ChainTxRecord(Base):
    """One signed transaction, recorded before it is broadcast.

    ``key`` is the job step's idempotency key; a step that re-runs finds its record and sends
    the same bytes again (same hash: the node answers "already known" or mines it once).
    The unique (chain, sender, nonce) stops two processes from signing with one nonce.
    """

    __tablename__ = "chain_transactions"
    __table_args__ = (UniqueConstraint("chain_id", "sender", "nonce", name="uq_chain_tx_nonce"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    sender: Mapped[str] = mapped_column(String(42))
    nonce: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66), index=True)
    raw: Mapped[str] = mapped_column(Text)
    # recorded -> sent -> mined | reverted | dropped (its nonce went to another transaction)
    status: Mapped[str] = mapped_column(String(16))
    block: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CursorRecord(Base):
    """The last block the event follower applied, per chain and contract."""

    __tablename__ = "chain_cursors"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
