"""knowledge: bases, documents, index versions, agent links, retrieval traces

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "knowledge_bases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("embedding_model", sa.String(length=500), nullable=False),
        sa.Column("owner_address", sa.String(length=42), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("knowledge_bases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_knowledge_bases_name"), ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_knowledge_bases_owner_address"), ["owner_address"], unique=False
        )

    op.create_table(
        "kb_documents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kb_id", sa.String(length=36), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("active_version", sa.String(length=36), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["kb_id"], ["knowledge_bases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kb_id", "filename", name="uq_kb_documents_kb_filename"),
    )
    with op.batch_alter_table("kb_documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_documents_kb_id"), ["kb_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_kb_documents_content_hash"), ["content_hash"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_kb_documents_active_version"), ["active_version"], unique=False
        )

    op.create_table(
        "kb_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kb_id", sa.String(length=36), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("kb_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kb_versions_kb_id"), ["kb_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_kb_versions_document_id"), ["document_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_kb_versions_status"), ["status"], unique=False)

    op.create_table(
        "agent_knowledge_bases",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("kb_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["kb_id"], ["knowledge_bases.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("agent_id", "kb_id"),
    )
    with op.batch_alter_table("agent_knowledge_bases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_knowledge_bases_kb_id"), ["kb_id"], unique=False)

    op.create_table(
        "retrieval_traces",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("kb_ids", sa.JSON(), nullable=False),
        sa.Column("hits", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("retrieval_traces", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retrieval_traces_message_id"), ["message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("retrieval_traces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retrieval_traces_message_id"))
    op.drop_table("retrieval_traces")
    with op.batch_alter_table("agent_knowledge_bases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_knowledge_bases_kb_id"))
    op.drop_table("agent_knowledge_bases")
    with op.batch_alter_table("kb_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_versions_status"))
        batch_op.drop_index(batch_op.f("ix_kb_versions_document_id"))
        batch_op.drop_index(batch_op.f("ix_kb_versions_kb_id"))
    op.drop_table("kb_versions")
    with op.batch_alter_table("kb_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_documents_active_version"))
        batch_op.drop_index(batch_op.f("ix_kb_documents_content_hash"))
        batch_op.drop_index(batch_op.f("ix_kb_documents_kb_id"))
    op.drop_table("kb_documents")
    with op.batch_alter_table("knowledge_bases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_knowledge_bases_name"))
    op.drop_table("knowledge_bases")
