"""payments: agent prices, charges of paid requests and settlement batches

Amounts are decimal strings of wei (a uint256 fits no integer column). Charges are keyed by
the usage record's id; a batch row is written with its members before its transaction is sent.

Revision ID: 0011_payments
Revises: 0011_lorebook
Create Date: 2026-12-07 23:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_payments"
down_revision: str | Sequence[str] | None = "0011_lorebook"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_prices",
        sa.Column("agent_id", sa.String(36), primary_key=True),
        sa.Column("currency", sa.String(42), nullable=False, server_default="native"),
        sa.Column("prompt_per_1k", sa.String(78), nullable=False, server_default="0"),
        sa.Column("completion_per_1k", sa.String(78), nullable=False, server_default="0"),
        sa.Column("speech_per_minute", sa.String(78), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "economy_charges",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payer", sa.String(42), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("token_id", sa.String(78), nullable=False),
        sa.Column("currency", sa.String(42), nullable=False),
        sa.Column("prompt_per_1k", sa.String(78), nullable=False),
        sa.Column("completion_per_1k", sa.String(78), nullable=False),
        sa.Column("speech_per_minute", sa.String(78), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("audio_seconds", sa.Float(), nullable=False, server_default="0"),
        sa.Column("amount", sa.String(78), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="unsettled"),
        sa.Column("batch_id", sa.String(66), nullable=True),
        sa.Column("shortfall", sa.String(78), nullable=False, server_default="0"),
    )
    op.create_index("ix_economy_charges_payer", "economy_charges", ["payer"])
    op.create_index("ix_economy_charges_agent_id", "economy_charges", ["agent_id"])
    op.create_index("ix_economy_charges_status", "economy_charges", ["status"])
    op.create_index("ix_economy_charges_batch_id", "economy_charges", ["batch_id"])
    op.create_table(
        "economy_batches",
        sa.Column("id", sa.String(66), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("charges", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lines", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("block", sa.Integer(), nullable=True),
        sa.Column("gas_used", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_economy_batches_status", "economy_batches", ["status"])


def downgrade() -> None:
    op.drop_table("economy_batches")
    op.drop_table("economy_charges")
    op.drop_table("agent_prices")
