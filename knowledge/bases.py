"""Knowledge bases and the agents that use them (``agent_knowledge_bases``).

A base is its own object: an agent may use several, a base may serve many agents. Every base
is readable by everyone; it belongs to the wallet that created it (``owner_address``; None for
an anonymous draft), and only that wallet deletes it or changes its documents. Letting an
agent use a base is a change to the agent, so it is the agent's owner who may do it.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import ConflictError, NotFoundError, ValidationError
from core.files import is_safe_id
from core.jobs import JobService
from core.principal import OwnerCheck, Principal
from core.settings import Settings
from knowledge.ingest import index_signature
from knowledge.records import (
    AgentKnowledgeRecord,
    DocumentRecord,
    IndexVersionRecord,
    KnowledgeBaseRecord,
)
from knowledge.schema import KnowledgeBaseView
from knowledge.versions import Versions

TARGET_TYPE = "knowledge_base"


class AgentLookup(Protocol):
    """What knowledge needs of the agents: whether one exists (``AgentService`` is one).

    Knowledge owns this Protocol instead of importing ``agents.service``, which (through the
    chat) depends on knowledge; ``container.py`` passes the agent service in.
    """

    def get_agent(self, agent_id: str) -> object:
        """The agent; raises ``NotFoundError`` when there is none."""
        ...


def authorize_base(owners: OwnerCheck, principal: Principal, base: KnowledgeBaseRecord) -> None:
    """A base belongs to the wallet that created it: only that wallet changes its documents
    or deletes it (a base made without signing in is an anonymous draft)."""
    owners.require_address(principal, base.owner_address, f"knowledge base '{base.name}'")


def load_base(session: Session, kb_id: str) -> KnowledgeBaseRecord:
    row = session.get(KnowledgeBaseRecord, kb_id) if is_safe_id(kb_id) else None
    if row is None:
        raise NotFoundError(f"no knowledge base with id {kb_id!r}")
    return row


def load_document(session: Session, kb_id: str, document_id: str) -> DocumentRecord:
    row = session.get(DocumentRecord, document_id) if is_safe_id(document_id) else None
    if row is None or row.kb_id != kb_id:
        raise NotFoundError(f"no document with id {document_id!r} in this knowledge base")
    return row


def check_model(settings: Settings, session: Session, base: KnowledgeBaseRecord) -> None:
    """Vectors of two models cannot be compared: refuse to mix them in one base.

    An empty base simply takes the current model."""
    current = settings.knowledge.embedding_model
    if base.embedding_model == current:
        return
    documents = session.scalar(
        select(func.count()).select_from(DocumentRecord).where(DocumentRecord.kb_id == base.id)
    )
    if documents:
        raise ConflictError(
            f"knowledge base '{base.name}' was indexed with the embedding model "
            f"{base.embedding_model!r}, but ANIMA_KNOWLEDGE_EMBEDDING_MODEL is {current!r}; "
            "switch the setting back or create a new base and upload the documents again"
        )
    base.embedding_model = current


def stale_documents(session: Session, kb_id: str, signature: str) -> int:
    """Documents of the base whose searchable chunks were cut another way than ``signature``
    (``knowledge/reindex.py`` re-cuts them)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(DocumentRecord)
            .join(IndexVersionRecord, IndexVersionRecord.id == DocumentRecord.active_version)
            .where(DocumentRecord.kb_id == kb_id, IndexVersionRecord.chunking != signature)
        )
        or 0
    )


def base_view(session: Session, row: KnowledgeBaseRecord, signature: str) -> KnowledgeBaseView:
    documents, chunks = session.execute(
        select(func.count(), func.coalesce(func.sum(DocumentRecord.chunk_count), 0)).where(
            DocumentRecord.kb_id == row.id
        )
    ).one()
    agent_ids = session.scalars(
        select(AgentKnowledgeRecord.agent_id).where(AgentKnowledgeRecord.kb_id == row.id)
    )
    return KnowledgeBaseView(
        id=row.id,
        name=row.name,
        description=row.description,
        embedding_model=row.embedding_model,
        document_count=int(documents),
        chunk_count=int(chunks),
        agent_ids=list(agent_ids),
        stale_documents=stale_documents(session, row.id, signature),
        owner_address=row.owner_address,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class Bases:
    """Create, list and delete bases; attach them to agents and detach them."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        agents: AgentLookup,
        jobs: JobService,
        owners: OwnerCheck,
        versions: Versions,
    ) -> None:
        self.settings = settings
        self.db = db
        self.agents = agents
        self.jobs = jobs
        self.owners = owners
        self.versions = versions

    @property
    def signature(self) -> str:
        """How chunks are made with the current settings (bases made otherwise are stale)."""
        return index_signature(self.settings)

    def create(
        self, name: str, description: str = "", *, principal: Principal
    ) -> KnowledgeBaseView:
        """A new, empty base owned by ``principal``'s wallet (if signed in)."""
        self.owners.require_creator(principal)
        name = (name or "").strip()
        if not name:
            raise ValidationError("a knowledge base needs a name")
        if len(name) > 200:
            raise ValidationError("a knowledge base name has at most 200 characters")
        record = KnowledgeBaseRecord(
            id=uuid.uuid4().hex,
            name=name,
            description=(description or "").strip()[:5000],
            embedding_model=self.settings.knowledge.embedding_model,
            owner_address=principal.address,
        )
        with self.db.session() as s:
            s.add(record)
        return self.get(record.id)

    def create_for_agent(
        self, agent_id: str, name: str, description: str = "", *, principal: Principal
    ) -> KnowledgeBaseView:
        """A new base that agent ``agent_id`` uses at once; the agent's owner is checked
        before the base exists, so a refused call leaves no base behind."""
        self.owners.require_owner(principal, agent_id)
        base = self.create(name, description, principal=principal)
        self.attach(agent_id, base.id, principal=principal)
        return self.get(base.id)

    def list_all(self) -> list[KnowledgeBaseView]:
        with self.db.session() as s:
            rows = s.scalars(select(KnowledgeBaseRecord).order_by(KnowledgeBaseRecord.created_at))
            return [base_view(s, r, self.signature) for r in rows.all()]

    def get(self, kb_id: str) -> KnowledgeBaseView:
        with self.db.session() as s:
            return base_view(s, load_base(s, kb_id), self.signature)

    def delete(self, kb_id: str, *, principal: Principal) -> None:
        """Delete a base with its documents; agents that used it simply stop using it."""
        with self.db.session() as s:
            authorize_base(self.owners, principal, load_base(s, kb_id))
        self.jobs.cancel_for_target(TARGET_TYPE, kb_id, "the knowledge base was deleted")
        with self.db.session() as s:
            s.delete(load_base(s, kb_id))
            s.execute(delete(IndexVersionRecord).where(IndexVersionRecord.kb_id == kb_id))
        self.versions.drop_base(kb_id)

    def attach(self, agent_id: str, kb_id: str, *, principal: Principal) -> list[KnowledgeBaseView]:
        """The agent's owner lets it answer from a base (any base: bases are readable)."""
        self.owners.require_owner(principal, agent_id)
        with self.db.session() as s:
            load_base(s, kb_id)
            if s.get(AgentKnowledgeRecord, (agent_id, kb_id)) is None:
                s.add(AgentKnowledgeRecord(agent_id=agent_id, kb_id=kb_id))
        return self.for_agent(agent_id)

    def detach(self, agent_id: str, kb_id: str, *, principal: Principal) -> list[KnowledgeBaseView]:
        """The agent stops using the base; the base itself is kept."""
        self.owners.require_owner(principal, agent_id)
        with self.db.session() as s:
            link = s.get(AgentKnowledgeRecord, (agent_id, kb_id)) if is_safe_id(kb_id) else None
            if link is None:
                raise NotFoundError(f"agent {agent_id!r} does not use knowledge base {kb_id!r}")
            s.delete(link)
        return self.for_agent(agent_id)

    def for_agent(self, agent_id: str) -> list[KnowledgeBaseView]:
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(KnowledgeBaseRecord)
                .join(AgentKnowledgeRecord, AgentKnowledgeRecord.kb_id == KnowledgeBaseRecord.id)
                .where(AgentKnowledgeRecord.agent_id == agent_id)
                .order_by(AgentKnowledgeRecord.created_at)
            )
            return [base_view(s, r, self.signature) for r in rows.all()]

    def ids_for_agent(self, agent_id: str) -> list[str]:
        """The bases a reply of the agent is grounded on, in the order they were attached."""
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(AgentKnowledgeRecord.kb_id)
                    .where(AgentKnowledgeRecord.agent_id == agent_id)
                    .order_by(AgentKnowledgeRecord.created_at)
                )
            )
