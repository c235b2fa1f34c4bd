"""agent_shares: each agent's revenue-share token (ERC-7641), recorded when it is issued

One row per agent with the contract's address and what was fixed at issue (supply, name,
symbol, the revenue share and the claimable part in basis points). Balances, snapshots and
claims are read from the chain.

Revision ID: 0011_shares
Revises: 0011_models
Create Date: 2026-12-07 23:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_shares"
down_revision: str | Sequence[str] | None = "0011_models"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_shares",
        sa.Column("agent_id", sa.String(36), primary_key=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("symbol", sa.String(16), nullable=False),
        sa.Column("supply", sa.String(78), nullable=False),
        sa.Column("revenue_bps", sa.Integer(), nullable=False),
        sa.Column("claimable_bps", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(42), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_shares_address", "agent_shares", ["address"])


def downgrade() -> None:
    op.drop_index("ix_agent_shares_address", table_name="agent_shares")
    op.drop_table("agent_shares")
