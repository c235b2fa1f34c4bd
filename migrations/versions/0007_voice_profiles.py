"""voice profiles: one per agent (sample files on disk, hash + consent in the row)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voice_profiles",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=False),
        sa.Column("sample_sha256", sa.String(length=64), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=True),
        sa.Column("original_rate", sa.Integer(), nullable=False),
        sa.Column("original_channels", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("speech_s", sa.Float(), nullable=False),
        sa.Column("speech_share", sa.Float(), nullable=False),
        sa.Column("clips", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=False),
        sa.Column("similarity", sa.JSON(), nullable=False),
        sa.Column("consent", sa.Text(), nullable=False),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("agent_id"),
    )


def downgrade() -> None:
    op.drop_table("voice_profiles")
