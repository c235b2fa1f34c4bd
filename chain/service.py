"""On-chain identity: minting agents, the owner check, card anchoring, status and metadata.

The API and the UI both call this service; it is a facade over one part per responsibility:

- ``chain/node.py``: the node, the contract deployment and the event follower, started lazily
  on the first call that needs the chain (``python app.py`` starts them at once), so tests and
  tools that never touch the chain never start a node;
- ``chain/ownership.py``: the owner check (``require_owner``), the one place that decides who
  may change an agent; ``core.principal.SYSTEM`` passes it;
- ``chain/minting.py`` and ``chain/anchoring.py``: mints and card-hash updates, durable jobs
  (``chain/jobs.py``) recorded before anything is sent, retried while the node is down, and
  sent at most once (``chain.transactions``);
- ``chain/tokens.py``: what the agent page and marketplaces read about a token.

Agent rows are written only by the agents service, through ``chain.agent_rows.AgentRows``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chain.agent_rows import AgentRows, agent_or_none
from chain.anchoring import (
    ANCHOR_JOB,
    Anchoring,
    AnchorRequest,
    SignedUpdate,
    VerifyView,
)
from chain.auth import AuthService
from chain.base import Chain
from chain.contract import AgentNFT, Deployment
from chain.minting import MINT_JOB, Minting
from chain.node import ChainInfo, ChainNode
from chain.ownership import Ownership
from chain.tokens import ChainStatus, Tokens
from chain.wallets import LocalWallets, Signers
from core.db import Database
from core.principal import SYSTEM, Principal
from core.settings import Settings

if TYPE_CHECKING:
    from agents.service import AgentView
    from core.jobs import JobService, JobView

__all__ = [
    "ANCHOR_JOB",
    "MINT_JOB",
    "AnchorRequest",
    "ChainInfo",
    "ChainService",
    "ChainStatus",
    "VerifyView",
]


class ChainService:
    """Implements ``core.principal.OwnerCheck`` for every other service."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        agents: AgentRows,
        jobs: JobService,
        chain: Chain | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.agents = agents
        self.jobs = jobs
        self.node = ChainNode(settings, db, agents, chain)
        self.chain: Chain = self.node.chain
        self.wallets = LocalWallets(settings.wallets_dir, settings.auth.keystore_scrypt_n)
        self.signers = Signers()
        self.auth = AuthService(settings, db, lambda: self.chain_id, self.wallets, self.signers)
        self.owners = Ownership(settings, agents, self.node)
        self.minting = Minting(agents, jobs, self.node, self.owners)
        self.anchoring = Anchoring(agents, jobs, self.node, self.owners, self.signers)
        self.tokens = Tokens(settings, agents, self.node, self.owners, self.minting, self.anchoring)
        agents.listeners.append(self)

    # ----- lifecycle --------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.node.nft is not None

    @property
    def chain_id(self) -> int:
        """The chain sign-in messages must name (known without starting a managed anvil)."""
        return self.node.chain_id

    def start(self, follow: bool = True) -> AgentNFT:
        """Start the node (anvil), load the minter, deploy if needed, start the follower."""
        return self.node.start(follow)

    def ensure_started(self) -> AgentNFT:
        return self.node.ensure_started()

    def stop(self) -> None:
        self.node.stop()

    def close(self) -> None:
        self.stop()

    def deploy(self, w3: Any = None, minter: Any = None) -> Deployment:
        """Deploy the contracts and remember where (``python app.py chain deploy``)."""
        return self.node.deploy(w3, minter)

    def tick(self) -> int:
        """One round of upkeep: restart a managed node that died, then apply new events."""
        return self.node.tick()

    def sync(self) -> int:
        """Apply new contract events to Anima's copy of every token now."""
        return self.node.sync()

    def info(self) -> ChainInfo:
        return self.node.info()

    # ----- the owner check (core.principal.OwnerCheck) ----------------------------------------
    def require_owner(self, principal: Principal, agent_id: str) -> AgentView:
        return self.owners.require_owner(principal, agent_id)

    def require_address(
        self,
        principal: Principal,
        owner: str | None,
        what: str,
        whose: str = "the wallet that created it",
    ) -> None:
        self.owners.require_address(principal, owner, what, whose)

    def require_creator(self, principal: Principal) -> None:
        self.owners.require_creator(principal)

    def holder(self, agent: AgentView) -> str:
        """The token holder read from the chain now; refreshes the stored copy if it moved."""
        return self.owners.holder(agent)

    # ----- minting ------------------------------------------------------------------------------
    def request_mint(self, agent_id: str, *, principal: Principal) -> JobView:
        """Mint the agent to the signed-in wallet, as a durable job (202 + the job)."""
        return self.minting.request_mint(agent_id, principal=principal)

    def mint_job(self, agent_id: str) -> JobView | None:
        return self.minting.job(agent_id)

    def mint_step(
        self, agent_id: str, to: str, key: str, progress: Callable[..., None] | None = None
    ) -> dict[str, Any]:
        """The mint job's one durable step (``chain/jobs.py``)."""
        return self.minting.step(agent_id, to, key, progress)

    def mark_mint_failed(self, agent_id: str) -> None:
        self.minting.mark_failed(agent_id)

    # ----- card anchoring -----------------------------------------------------------------------
    def request_anchor(self, agent_id: str, *, principal: Principal) -> JobView | None:
        """Anchor the agent's current card hash on chain (a job), if it is minted."""
        return self.anchoring.request_anchor(agent_id, principal=principal)

    def anchor_request(self, agent_id: str) -> AnchorRequest:
        """The EIP-712 message the holder signs to anchor the served card (browser wallets)."""
        return self.anchoring.anchor_request(agent_id)

    def submit_anchor(
        self,
        agent_id: str,
        *,
        principal: Principal,
        card_hash: str,
        version: int,
        deadline: int,
        signature: str,
    ) -> JobView:
        """Relay a holder's signed ``CardUpdate`` (checked here first, then sent by a job)."""
        return self.anchoring.submit_anchor(
            agent_id,
            principal=principal,
            card_hash=card_hash,
            version=version,
            deadline=deadline,
            signature=signature,
        )

    def anchor_step(
        self,
        agent_id: str,
        key: str,
        card_hash: str | None = None,
        version: int | None = None,
        deadline: int | None = None,
        signer: str | None = None,
        signature: str | None = None,
    ) -> dict[str, Any]:
        """The anchor job's durable step (``chain/jobs.py``): relay a card update at most once.
        Without a signature, a local wallet of the holder signs the served card."""
        signed = None
        if signature is not None:
            assert card_hash and version is not None and deadline is not None and signer
            signed = SignedUpdate(
                card_hash=card_hash,
                version=version,
                deadline=deadline,
                signer=signer,
                signature=signature,
            )
        return self.anchoring.step(agent_id, key, signed)

    def reconcile_anchors(self, address: str, *, principal: Principal) -> list[str]:
        """Anchor every minted card of ``address`` that changed since its last anchor."""
        return self.anchoring.reconcile_anchors(address, principal=principal)

    # ----- status, verification, metadata ---------------------------------------------------
    def status(self, agent_id: str) -> ChainStatus:
        return self.tokens.status(agent_id)

    def verify(self, agent_id: str) -> VerifyView:
        """Recompute the served card's hash and compare it with the chain's, read now."""
        return self.anchoring.verify(agent_id)

    def metadata(self, token_id: str, base_url: str) -> dict[str, Any]:
        """ERC-721 metadata JSON (what ``tokenURI`` points at; marketplaces read it)."""
        return self.tokens.metadata(token_id, base_url)

    # ----- agent events (AgentService listener) -----------------------------------------------
    def agent_created(self, agent: AgentView) -> None:
        """Mint at once when a signed-in wallet created the agent (ANIMA_CHAIN_MINT_ON_CREATE)."""
        if agent.owner_address and self.settings.chain.mint_on_create:
            self.minting.submit(agent.id, agent.owner_address)

    def card_changed(self, agent: AgentView) -> None:
        """Each accepted edit of a minted card is anchored on chain (a job); the edit itself
        was checked, so the app asks for the anchor on its own behalf."""
        if agent.mint_state == "minted":
            self.request_anchor(agent.id, principal=SYSTEM)

    def agent_deleted(self, agent_id: str) -> None:
        """Pending mints and anchors of a deleted agent end as cancelled (its token stays)."""
        self.jobs.cancel_for_target("agent", agent_id, "the agent was deleted")

    def _agent_or_none(self, agent_id: str) -> AgentView | None:
        """The agent, or ``None`` once deleted (the mint job asks before it starts)."""
        return agent_or_none(self.agents, agent_id)
