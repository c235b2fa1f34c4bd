"""keys: scopes and limits on API keys, the usage table

Revision ID: 0009_keys
Revises: 0009_fairness
Create Date: 2026-12-07 20:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_keys"
down_revision: str | Sequence[str] | None = "0009_fairness"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "scopes", sa.String(length=64), server_default="chat,manage,admin", nullable=False
            )
        )
        batch_op.add_column(sa.Column("allowed_agents", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rpm_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("tpm_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_streams", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("budget_tokens", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("budget_period", sa.String(length=8), nullable=True))

    op.create_table(
        "usage_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=42), nullable=True),
        sa.Column("visitor_id", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("audio_seconds", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        for column in ("created_at", "key_id", "address", "agent_id"):
            batch_op.create_index(batch_op.f(f"ix_usage_events_{column}"), [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        for column in ("created_at", "key_id", "address", "agent_id"):
            batch_op.drop_index(batch_op.f(f"ix_usage_events_{column}"))
    op.drop_table("usage_events")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        for column in (
            "budget_period",
            "budget_tokens",
            "max_streams",
            "tpm_limit",
            "rpm_limit",
            "expires_at",
            "allowed_agents",
            "scopes",
        ):
            batch_op.drop_column(column)
