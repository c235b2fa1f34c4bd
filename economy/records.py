"""Tables of the agent economy: prices, charges and settlement batches.

Amounts are wei (or an ERC-20's smallest unit) kept as decimal strings: a uint256 does not fit
a 64-bit integer column, and SQLite's NUMERIC would round it through a float. Sums are done in
Python on exact integers.

A charge is keyed by the usage record's id (the request id), so a request is charged at most
once, and the audit can join the two tables. A batch is written with its members *before* its
settlement transaction is sent: a process that dies after sending finds the batch on restart
and asks the chain whether it settled instead of building a new one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

NATIVE = "native"  # the chain's own coin; an ERC-20 price names the token's address


def utcnow() -> datetime:
    return datetime.now(UTC)


class AgentPriceRecord(Base):
    """What using an agent through the API costs others; no row: free."""

    __tablename__ = "agent_prices"

    agent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    currency: Mapped[str] = mapped_column(String(42), default=NATIVE)
    prompt_per_1k: Mapped[str] = mapped_column(String(78), default="0")
    completion_per_1k: Mapped[str] = mapped_column(String(78), default="0")
    speech_per_minute: Mapped[str] = mapped_column(String(78), default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChargeRecord(Base):
    """One paid request: what it used, at which price, and where its settlement stands.

    ``status``: "unsettled" (waiting for a batch), "batched" (in a batch not yet mined),
    "settled" (its batch is on chain). ``shortfall``: what the chain could not debit because
    the payer had withdrawn it meanwhile.
    """

    __tablename__ = "economy_charges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the usage record's id
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    payer: Mapped[str] = mapped_column(String(42), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    agent_id: Mapped[str] = mapped_column(String(36), index=True)
    token_id: Mapped[str] = mapped_column(String(78))  # the agent's ERC-721 id
    currency: Mapped[str] = mapped_column(String(42))
    prompt_per_1k: Mapped[str] = mapped_column(String(78))
    completion_per_1k: Mapped[str] = mapped_column(String(78))
    speech_per_minute: Mapped[str] = mapped_column(String(78))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    audio_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    amount: Mapped[str] = mapped_column(String(78))
    status: Mapped[str] = mapped_column(String(16), default="unsettled", index=True)
    batch_id: Mapped[str | None] = mapped_column(String(66), nullable=True, index=True)
    shortfall: Mapped[str] = mapped_column(String(78), default="0")


class SettlementBatchRecord(Base):
    """A batch of charges settled by one ``Payments.settle`` transaction.

    ``status``: "open" (written, maybe sent), "settled" (mined, or found settled on chain),
    "failed" (the contract refused it; its charges went back to be batched again).
    """

    __tablename__ = "economy_batches"

    id: Mapped[str] = mapped_column(String(66), primary_key=True)  # 0x + 32 bytes: on chain too
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    charges: Mapped[int] = mapped_column(Integer, default=0)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # the job sending it (retries: +1)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    block: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gas_used: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
