"""lorebooks: standalone world-info books, attachable to several agents

A book is kept in the card's ``character_book`` shape (``data``); ``agent_lorebooks`` links a
book to the agents whose replies read it. Deleting an agent or a book removes its links.

Revision ID: 0011_lorebook
Revises: 0011_shares
Create Date: 2026-12-07 23:15:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_lorebook"
down_revision: str | Sequence[str] | None = "0011_shares"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lorebooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner_address", sa.String(42), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lorebooks_owner_address", "lorebooks", ["owner_address"])
    op.create_table(
        "agent_lorebooks",
        sa.Column(
            "agent_id",
            sa.String(36),
            sa.ForeignKey("agents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "lorebook_id",
            sa.String(36),
            sa.ForeignKey("lorebooks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_lorebooks_lorebook_id", "agent_lorebooks", ["lorebook_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_lorebooks_lorebook_id", table_name="agent_lorebooks")
    op.drop_table("agent_lorebooks")
    op.drop_index("ix_lorebooks_owner_address", table_name="lorebooks")
    op.drop_table("lorebooks")
