"""message positions: a per-conversation counter and one message per position

Positions used to be ``max + 1`` read without a lock, so two concurrent sends could store
the same position, and a reply took its position only when it was saved. Now each
conversation keeps ``next_position`` (taken atomically with an UPDATE) and
``(conversation_id, position)`` is unique. Conversations that already hold duplicates are
renumbered first, keeping their order (position, then creation time).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(
            sa.Column("next_position", sa.Integer(), nullable=False, server_default="0")
        )
    bind = op.get_bind()
    duplicated = bind.execute(
        sa.text(
            "SELECT DISTINCT conversation_id FROM messages "
            "GROUP BY conversation_id, position HAVING COUNT(*) > 1"
        )
    ).scalars()
    for conversation_id in list(duplicated):
        rows = bind.execute(
            sa.text(
                "SELECT id FROM messages WHERE conversation_id = :c "
                "ORDER BY position, created_at, id"
            ),
            {"c": conversation_id},
        ).scalars()
        for position, message_id in enumerate(list(rows)):
            bind.execute(
                sa.text("UPDATE messages SET position = :p WHERE id = :i"),
                {"p": position, "i": message_id},
            )
    bind.execute(
        sa.text(
            "UPDATE conversations SET next_position = COALESCE("
            "(SELECT MAX(position) + 1 FROM messages "
            "WHERE messages.conversation_id = conversations.id), 0)"
        )
    )
    op.create_index(
        "uq_messages_conversation_position",
        "messages",
        ["conversation_id", "position"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_messages_conversation_position", table_name="messages")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("next_position")
