"""personas: the names and descriptions users chat as

A persona belongs to a signed-in wallet (``owner_address``) or to an anonymous browser
(``visitor_id``); with neither it is local and shared, like an anonymous draft. One persona per
owner may be the default that new chats take. The avatar is a small PNG kept in the row.

Revision ID: 0010_persona
Revises: 0010_retrieval
Create Date: 2026-12-07 20:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_persona"
down_revision: str | Sequence[str] | None = "0010_retrieval"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "personas",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_address", sa.String(42), nullable=True),
        sa.Column("visitor_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("avatar", sa.LargeBinary(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_personas_owner_address", "personas", ["owner_address"])
    op.create_index("ix_personas_visitor_id", "personas", ["visitor_id"])


def downgrade() -> None:
    op.drop_index("ix_personas_visitor_id", table_name="personas")
    op.drop_index("ix_personas_owner_address", table_name="personas")
    op.drop_table("personas")
