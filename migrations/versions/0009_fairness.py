"""fairness: agent visibility (public, unlisted, private)

Revision ID: 0009_fairness
Revises: 0009_privacy
Create Date: 2026-12-07 20:05:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_fairness"
down_revision: str | Sequence[str] | None = "0009_privacy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every agent that exists was listed to everyone: it stays public.
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("visibility", sa.String(length=16), nullable=False, server_default="public")
        )
        batch_op.create_index(batch_op.f("ix_agents_visibility"), ["visibility"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_visibility"))
        batch_op.drop_column("visibility")
