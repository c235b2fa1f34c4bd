"""Wires settings to components and services, once (the app's dependency injection).

Both adapters, the FastAPI routers and the Gradio UI, receive this one ``Services`` object, so
they always act on the same database, files and loaded models.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.chat import ChatService
from agents.chat_transfer import ChatTransferService
from agents.conversation_access import ConversationAccess
from agents.finetune.jobs import FinetuneJobDeps
from agents.finetune.service import FinetuneService
from agents.group_chat import GroupChatService
from agents.llm.pool import LLMPool
from agents.lorebooks import LorebookService
from agents.memory import CONVERSATION_TARGET, MemoryDeps, MemoryService
from agents.model_connections import ModelConnections
from agents.personas import PersonaService
from agents.prompt_preview import PromptInspector
from agents.service import AgentService
from chain.auth import AuthService
from chain.base import Chain
from chain.jobs import ChainJobDeps
from chain.service import ChainService
from core.db import Database
from core.jobs import JobService
from core.principal import Principal
from core.settings import Settings
from core.visitor import VisitorIds
from economy.jobs import SettlementDeps
from economy.readout import EconomyReadout
from economy.service import EconomyService
from economy.shares_service import SharesService
from knowledge.base import Embedder
from knowledge.jobs import IngestDeps
from knowledge.service import TARGET_TYPE as KNOWLEDGE_BASE
from knowledge.service import KnowledgeService
from usage.service import UsageService
from voice.pool import VoicePool
from voice.service import VoiceService


@dataclass
class Services:
    settings: Settings
    db: Database
    llm: LLMPool
    agents: AgentService
    chat: ChatService
    jobs: JobService
    knowledge: KnowledgeService
    voice: VoiceService
    # On-chain identity: tokens, the owner check, sign-in.
    chain: ChainService
    auth: AuthService
    finetune: FinetuneService
    # Anonymous browsers' signed identities (the visitor cookie), for private conversations.
    visitors: VisitorIds
    # Per-key limits and usage records (written in batches, flushed on close).
    usage: UsageService
    group_chat: GroupChatService
    chat_transfer: ChatTransferService
    # Who the user is in a chat, and each chat's author's note, summary and pins.
    personas: PersonaService
    memory: MemoryService
    # The prompt inspector and the draft test chat, over the chat's own reply path.
    inspector: PromptInspector
    # Model connections (local files, OpenAI-compatible servers) and the run-time default.
    models: ModelConnections
    # Revenue-share tokens (ERC-7641) of agents: issue, holders, snapshots, claims.
    shares: SharesService
    # Lorebook editing and standalone world-info books attached to agents.
    lorebooks: LorebookService
    # Prices of agents, prepaid balances, the 402 gate and batched settlement on chain.
    economy: EconomyService

    def close(self) -> None:
        if self.llm.connections is self.models:
            self.llm.connections = None  # a pool shared beyond this app (tests) forgets our DB
        self.economy.close()
        self.usage.close()
        self.chain.close()
        self.jobs.close()
        self.knowledge.close()
        self.db.dispose()


def build_services(
    settings: Settings,
    llm: LLMPool | None = None,
    embedder: Embedder | None = None,
    chain: Chain | None = None,
    voice_pool: VoicePool | None = None,
) -> Services:
    """Create the data directory, migrate the database and build every service.

    Tests pass shared, already loaded parts: ``llm`` (the model pool), ``embedder`` (the
    knowledge embedder), ``chain`` (a node someone else started and stops; by default the
    chain service builds its own from settings and stops it on ``close``) and ``voice_pool``
    (speech engines).
    """
    settings.ensure_dirs()
    db = Database(settings.resolved_database_url)
    db.migrate()
    pool = llm or LLMPool(settings)
    models = ModelConnections(settings, db)
    pool.connections = models  # agents' ``conn:`` models and the default chosen at run time
    models.listeners.append(pool.forget)
    models.loader = lambda ref: pool.get(ref).load()
    agents = AgentService(settings, db)
    jobs = JobService(settings, db)
    chain_service = ChainService(settings, db, agents, jobs, chain=chain)
    agents.owner_check = chain_service  # built after the agents service: it reads agents
    knowledge = KnowledgeService(settings, db, agents, jobs, chain_service, embedder=embedder)
    access = ConversationAccess(settings.auth.conversations)
    personas = PersonaService(db, settings.server.max_image_pixels)
    memory = MemoryService(db, agents, pool, jobs, personas, access)
    chat = ChatService(db, agents, pool, knowledge=knowledge, access=access, memory=memory)
    voice = VoiceService(
        settings, db, agents, chat, voice_pool or VoicePool(settings), chain_service
    )
    finetune = FinetuneService(settings, db, agents, jobs, chain_service)
    agents.attachments.append(finetune)  # the active adapter travels with the CHARX
    _wire_jobs(jobs, agents, chain_service, knowledge, finetune)
    usage = _usage_service(settings, db, agents, chain_service)
    chat.meter = usage.track
    lorebooks = LorebookService(db, agents)
    chat.lore = memory.lore = lorebooks  # attached books' entries join every reply's lorebook
    economy = _economy_service(settings, db, agents, chain_service, jobs, pool)
    jobs.provide(MemoryDeps(memory=memory))
    # A summary job is its conversation's: only who may change the chat sees or cancels it.
    jobs.access.target_checks[CONVERSATION_TARGET] = memory.require_changeable
    shares = SharesService(db, chain_service)
    shares.payments = EconomyReadout(economy)  # prices and balances on the shares' screens
    chain_service.tokens.revenue_share_bps = shares.revenue_bps_of  # token metadata shows it
    chain_service.tokens.price_label = shares.price_label
    return Services(
        settings=settings,
        db=db,
        llm=pool,
        agents=agents,
        chat=chat,
        jobs=jobs,
        knowledge=knowledge,
        voice=voice,
        chain=chain_service,
        auth=chain_service.auth,
        finetune=finetune,
        visitors=VisitorIds(settings.data_dir),
        usage=usage,
        group_chat=GroupChatService(db, agents, chat),
        chat_transfer=ChatTransferService(db, agents, access),
        personas=personas,
        memory=memory,
        inspector=PromptInspector(agents, chat),
        models=models,
        shares=shares,
        lorebooks=lorebooks,
        economy=economy,
    )


def _usage_service(
    settings: Settings, db: Database, agents: AgentService, chain: ChainService
) -> UsageService:
    def owned_agents(principal: Principal) -> list[str]:
        return [a.id for a in agents.list_agents() if principal.is_address(a.owner_address)]

    return UsageService(settings, db, owned_agents, chain.auth.keys.policy)


def _economy_service(
    settings: Settings,
    db: Database,
    agents: AgentService,
    chain: ChainService,
    jobs: JobService,
    pool: LLMPool,
) -> EconomyService:
    def context_window(agent_id: str) -> int:
        agent = agents.get_agent(agent_id)
        return pool.get(agent.model, agent.adapter).context_window

    economy = EconomyService(settings, db, chain, agents, jobs, context_window)
    jobs.provide(
        SettlementDeps(settlement=economy.settlement, tx_retries=settings.chain.tx_retries)
    )
    return economy


def _wire_jobs(
    jobs: JobService,
    agents: AgentService,
    chain: ChainService,
    knowledge: KnowledgeService,
    finetune: FinetuneService,
) -> None:
    """Give the job service what it could not take when built (it comes before the services
    that submit jobs): the owner check behind who sees a job, and each job kind's services."""

    def base_owner(kb_id: str) -> str | None:
        return knowledge.get_base(kb_id).owner_address

    jobs.use_owner_check(chain, address_owners={KNOWLEDGE_BASE: base_owner})
    jobs.provide(
        IngestDeps(knowledge=knowledge),
        ChainJobDeps(chain=chain, agents=agents, tx_retries=chain.settings.chain.tx_retries),
        FinetuneJobDeps(finetune=finetune),
    )
