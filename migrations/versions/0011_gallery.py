"""gallery: search columns and sort indexes for listing thousands of agents

``name_key`` (the casefolded name) and ``tags_text`` (the casefolded tags between bars) let the
gallery search, filter by tag and sort by name in SQL on SQLite and PostgreSQL alike; the
indexes on ``created_at`` and ``updated_at`` serve the "oldest" and "recent" orders. Existing
agents get both columns filled from their card here.

Columns are added in place (``add_column``), never by copying the table: a copy of ``agents``
on SQLite with foreign keys on would cascade-delete every conversation.

Revision ID: 0011_gallery
Revises: 0011_payments
Create Date: 2026-12-07 23:10:00

"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_gallery"
down_revision: str | Sequence[str] | None = "0011_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500


def _key(text: object) -> str:
    # A copy of agents.agent_search.search_key as it was when this ran: migrations must not
    # change meaning when the app's code does.
    plain = unicodedata.normalize("NFKD", str(text or ""))
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return " ".join(plain.split()).casefold()


def _tags_text(tags: object) -> str:
    if not isinstance(tags, list):
        return ""
    keys = [_key(t).replace("|", " ").strip() for t in tags if isinstance(t, str)]
    keys = [k for k in dict.fromkeys(keys) if k]
    return f"|{'|'.join(keys)}|" if keys else ""


def upgrade() -> None:
    op.add_column(
        "agents", sa.Column("name_key", sa.String(200), nullable=False, server_default="")
    )
    op.add_column("agents", sa.Column("tags_text", sa.Text(), nullable=False, server_default=""))
    agents = sa.table(
        "agents",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("card_data", sa.JSON),
        sa.column("name_key", sa.String),
        sa.column("tags_text", sa.Text),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(agents.c.id, agents.c.name, agents.c.card_data)).all()
    for start in range(0, len(rows), BATCH):
        for agent_id, name, data in rows[start : start + BATCH]:
            tags = data.get("tags") if isinstance(data, dict) else None
            bind.execute(
                agents.update()
                .where(agents.c.id == agent_id)
                .values(name_key=_key(name)[:200], tags_text=_tags_text(tags))
            )
    op.create_index("ix_agents_name_key", "agents", ["name_key"])
    op.create_index("ix_agents_created_at", "agents", ["created_at"])
    op.create_index("ix_agents_updated_at", "agents", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_agents_updated_at", table_name="agents")
    op.drop_index("ix_agents_created_at", table_name="agents")
    op.drop_index("ix_agents_name_key", table_name="agents")
    op.drop_column("agents", "tags_text")
    op.drop_column("agents", "name_key")
