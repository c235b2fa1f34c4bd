"""on-chain identity: token columns on agents; nonces, sessions, API keys, transactions, cursor

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:30:00

The old integer ``agents.token_id`` (never written) is replaced by a decimal string: token ids
are uint256. It is dropped and re-added with plain ALTER TABLE statements, never a batch
table copy: on SQLite a copy drops the ``agents`` table, and with foreign keys on that would
cascade-delete every conversation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AGENT_COLUMNS: tuple[tuple[str, sa.types.TypeEngine], ...] = (
    ("token_id", sa.String(length=78)),
    ("mint_state", sa.String(length=16)),
    ("token_contract", sa.String(length=42)),
    ("chain_id", sa.BigInteger()),
    ("chain_card_hash", sa.String(length=66)),
    ("chain_card_version", sa.Integer()),
)


def _drop_column(table: str, column: str) -> None:
    # SQLite >= 3.35 drops a plain column in place; Alembic would copy the table instead.
    op.execute(sa.text(f'ALTER TABLE "{table}" DROP COLUMN "{column}"'))


def upgrade() -> None:
    _drop_column("agents", "token_id")
    for name, type_ in AGENT_COLUMNS:
        op.add_column("agents", sa.Column(name, type_, nullable=True))
    op.create_index("ix_agents_token_id", "agents", ["token_id"], unique=False)

    op.create_table(
        "auth_nonces",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_auth_nonces_expires_at", "auth_nonces", ["expires_at"], unique=False)
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("wallet", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_auth_sessions_address", "auth_sessions", ["address"], unique=False)
    op.create_index("ix_auth_sessions_expires_at", "auth_sessions", ["expires_at"], unique=False)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_api_keys_address", "api_keys", ["address"], unique=False)
    op.create_table(
        "chain_transactions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(length=42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_id", "sender", "nonce", name="uq_chain_tx_nonce"),
    )
    op.create_index("ix_chain_transactions_key", "chain_transactions", ["key"], unique=False)
    op.create_index(
        "ix_chain_transactions_agent_id", "chain_transactions", ["agent_id"], unique=False
    )
    op.create_index(
        "ix_chain_transactions_tx_hash", "chain_transactions", ["tx_hash"], unique=False
    )
    op.create_table(
        "chain_cursors",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("chain_cursors")
    op.drop_table("chain_transactions")
    op.drop_table("api_keys")
    op.drop_table("auth_sessions")
    op.drop_table("auth_nonces")
    op.drop_index("ix_agents_token_id", table_name="agents")
    for name, _type in reversed(AGENT_COLUMNS):
        _drop_column("agents", name)
    op.add_column("agents", sa.Column("token_id", sa.Integer(), nullable=True))
