"""Wires settings to components and services, once (the app's dependency injection).

Both adapters, the FastAPI routers and the Gradio UI, receive this one ``Services`` object, so
they always act on the same database, files and loaded models.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.chat import ChatService
from agents.llm.pool import LLMPool
from agents.service import AgentService
from core.db import Database
from core.jobs import JobService
from core.settings import Settings
from knowledge.base import Embedder
from knowledge.service import KnowledgeService


@dataclass
class Services:
    settings: Settings
    db: Database
    llm: LLMPool
    agents: AgentService
    chat: ChatService
    jobs: JobService
    knowledge: KnowledgeService

    def close(self) -> None:
        self.jobs.close()
        self.knowledge.close()
        self.db.dispose()


def build_services(
    settings: Settings, llm: LLMPool | None = None, embedder: Embedder | None = None
) -> Services:
    """Create the data directory, migrate the database and build every service."""
    settings.ensure_dirs()
    db = Database(settings.resolved_database_url)
    db.migrate()
    pool = llm or LLMPool(settings)
    agents = AgentService(settings, db)
    jobs = JobService(settings, db)
    knowledge = KnowledgeService(settings, db, agents, jobs, embedder=embedder)
    chat = ChatService(db, agents, pool, knowledge=knowledge)
    svc = Services(
        settings=settings,
        db=db,
        llm=pool,
        agents=agents,
        chat=chat,
        jobs=jobs,
        knowledge=knowledge,
    )
    jobs.services = svc
    return svc
