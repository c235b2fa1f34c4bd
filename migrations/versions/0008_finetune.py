"""finetune: fine-tune runs, adapter versions, activation history

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "finetune_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("adapter_name", sa.String(length=100), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("base_model", sa.String(length=500), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("data_summary", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("adapter_name"),
        sa.UniqueConstraint("agent_id", "version", name="uq_finetune_runs_version"),
    )
    with op.batch_alter_table("finetune_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finetune_runs_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_runs_job_id"), ["job_id"], unique=False)

    op.create_table(
        "adapters",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("base_model", sa.String(length=500), nullable=False),
        sa.Column("base_model_name", sa.String(length=200), nullable=False),
        sa.Column("base_fingerprint", sa.JSON(), nullable=True),
        sa.Column("eval", sa.JSON(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("agent_id", "version", name="uq_adapters_version"),
    )
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_adapters_agent_id"), ["agent_id"], unique=False)

    op.create_table(
        "adapter_activations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("adapter_name", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("adapter_activations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_adapter_activations_agent_id"), ["agent_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("adapter_activations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adapter_activations_agent_id"))
    op.drop_table("adapter_activations")
    with op.batch_alter_table("adapters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_adapters_agent_id"))
    op.drop_table("adapters")
    with op.batch_alter_table("finetune_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finetune_runs_job_id"))
        batch_op.drop_index(batch_op.f("ix_finetune_runs_agent_id"))
    op.drop_table("finetune_runs")
