"""role-play chat: message versions (swipes), pins, speakers; branches, author's note, memory,
group members

Messages kept their earlier versions in ``alternatives`` with the shown one in ``content``.
Now every message holds all of its versions in order (``versions``) and which one is shown
(``selected``); ``content`` stays a copy of the selected version, so reading history needs
no JSON. A greeting's versions are the card's greetings in card order; a reply's are its
generations oldest first. ``pinned`` messages always stay in the prompt; ``speaker_id`` and
``name`` say which agent spoke in a group chat.

Conversations gain the branch they came from, the persona they use, the author's note, the
running summary of turns that no longer fit the context, who replies next in a group chat,
and ``revision``, bumped by every edit or delete so a reply streaming meanwhile can tell.

Revision ID: 0009_chat
Revises: 0008
Create Date: 2026-12-07 20:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_chat"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 1000


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("versions", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("selected", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("speaker_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))
    _fill_versions()
    with op.batch_alter_table("messages") as batch:
        batch.alter_column("versions", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("alternatives")

    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("parent_position", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("persona_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("authors_note", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("authors_note_depth", sa.Integer(), nullable=False, server_default="4")
        )
        batch.add_column(
            sa.Column("authors_note_frequency", sa.Integer(), nullable=False, server_default="1")
        )
        batch.add_column(sa.Column("summary", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("summary_upto", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("summary_pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("reply_order", sa.String(length=16), nullable=False, server_default="manual")
        )
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_conversations_parent_id", ["parent_id"], unique=False)

    op.create_table(
        "conversation_members",
        sa.Column("conversation_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("conversation_id", "agent_id"),
    )


def _fill_versions() -> None:
    """Old rows: a greeting showed its first version, a regenerated reply its newest."""
    bind = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.String),
        sa.column("position", sa.Integer),
        sa.column("role", sa.String),
        sa.column("content", sa.Text),
        sa.column("alternatives", sa.JSON),
        sa.column("versions", sa.JSON),
        sa.column("selected", sa.Integer),
    )
    while True:
        rows = bind.execute(
            sa.select(
                messages.c.id,
                messages.c.position,
                messages.c.role,
                messages.c.content,
                messages.c.alternatives,
            )
            .where(messages.c.versions.is_(None))
            .limit(PAGE)
        ).all()
        if not rows:
            return
        for row in rows:
            others = list(row.alternatives or [])
            if row.position == 0 and row.role == "assistant":
                versions, selected = [row.content, *others], 0
            else:
                versions, selected = [*others, row.content], len(others)
            bind.execute(
                messages.update()
                .where(messages.c.id == row.id)
                .values(versions=versions, selected=selected)
            )


def downgrade() -> None:
    op.drop_table("conversation_members")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_index("ix_conversations_parent_id")
        for column in (
            "revision",
            "reply_order",
            "summary_pinned",
            "summary_upto",
            "summary",
            "authors_note_frequency",
            "authors_note_depth",
            "authors_note",
            "persona_id",
            "parent_position",
            "parent_id",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("alternatives", sa.JSON(), nullable=False, server_default="[]"))
    bind = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.String),
        sa.column("versions", sa.JSON),
        sa.column("selected", sa.Integer),
        sa.column("alternatives", sa.JSON),
    )
    rows = bind.execute(sa.select(messages.c.id, messages.c.versions, messages.c.selected)).all()
    for row in rows:
        versions = list(row.versions or [])
        others = [v for i, v in enumerate(versions) if i != row.selected]
        bind.execute(messages.update().where(messages.c.id == row.id).values(alternatives=others))
    with op.batch_alter_table("messages") as batch:
        for column in ("name", "speaker_id", "pinned", "selected", "versions"):
            batch.drop_column(column)
