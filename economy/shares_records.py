"""The table of issued revenue shares: one row per agent, written once when its ``AgentShares``
contract is deployed. The chain holds the balances, snapshots and claims; this row only says
where the contract is and what was chosen at issue (the revenue share is immutable, on chain
as in this row)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class AgentSharesRecord(Base):
    __tablename__ = "agent_shares"

    agent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str] = mapped_column(String(42), index=True)
    name: Mapped[str] = mapped_column(String(100))
    symbol: Mapped[str] = mapped_column(String(16))
    # uint256 amounts do not fit a BIGINT: kept as decimal strings.
    supply: Mapped[str] = mapped_column(String(78))
    revenue_bps: Mapped[int] = mapped_column(Integer)
    claimable_bps: Mapped[int] = mapped_column(Integer)
    issuer: Mapped[str] = mapped_column(String(42))
    tx_hash: Mapped[str] = mapped_column(String(66))
    block: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
