"""privacy: who started each conversation (a wallet, or an anonymous visitor)

Both columns are nullable and old rows get neither: conversations started before owners were
recorded stay open to everyone (shown as shared) until someone claims one.

Revision ID: 0009_privacy
Revises: 0009_chat
Create Date: 2026-12-07 20:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_privacy"
down_revision: str | Sequence[str] | None = "0009_chat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_address", sa.String(length=42), nullable=True))
        batch_op.add_column(sa.Column("visitor_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_conversations_owner_address"), ["owner_address"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_conversations_visitor_id"), ["visitor_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversations_visitor_id"))
        batch_op.drop_index(batch_op.f("ix_conversations_owner_address"))
        batch_op.drop_column("visitor_id")
        batch_op.drop_column("owner_address")
