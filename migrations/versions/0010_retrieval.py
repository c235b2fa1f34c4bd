"""knowledge: how each index version's chunks were cut

``kb_versions.chunking`` records the chunking a version's chunks were made with (the
chunking code's version and the token budget), so bases indexed another way can be found
and re-indexed in the background. Rows from before have an empty value: their chunking is
unknown, so their bases are offered a re-index.

Revision ID: 0010_retrieval
Revises: 0009_keys
Create Date: 2026-12-07 20:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_retrieval"
down_revision: str | Sequence[str] | None = "0009_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("kb_versions") as batch:
        batch.add_column(
            sa.Column("chunking", sa.String(length=64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("kb_versions") as batch:
        batch.drop_column("chunking")
