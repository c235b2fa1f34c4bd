"""On-chain identity: minting agents, the owner check, card anchoring, status and metadata.

The API and the UI both call this service. Its one rule, in ``require_owner``:

- a **minted** agent is edited only by the current holder of its token, read from the chain
  (``ownerOf``) at the moment of the edit, so a transfer made anywhere moves control at once;
  while the node cannot be reached such edits are refused (503), never allowed on stale data;
- an agent **created by a signed-in wallet** but not (yet) minted belongs to that wallet;
- an agent **nobody owns** (created without signing in: local, single-user use) may be edited
  by anyone who can use the app (``ANIMA_AUTH_ANONYMOUS_EDITS``, default true; with false, by
  any signed-in wallet). Minting it makes it the minter's.

Mints and card-hash updates are durable jobs (``chain/jobs.py``): recorded before anything is
sent, retried while the node is down, and sent at most once (``chain.transactions``). A card
update is relayed with the holder's EIP-712 signature, so the holder pays no gas: a local
wallet's key signs automatically while its session is open; a browser wallet signs the
request the agent page shows (``anchor_request`` / ``submit_anchor``).

The managed anvil node, the contract deployment and the event follower start lazily, on the
first call that needs the chain (``python app.py`` starts them at once), so tests and tools
that never touch the chain never start a node.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import select, update

from agents import cards
from agents.records import AgentRecord
from agents.service import AgentService, AgentView
from chain.auth import AuthService
from chain.base import Chain
from chain.contract import (
    AgentNFT,
    Deployment,
    recover_card_update_signer,
    sign_card_update,
    token_id_of,
)
from chain.deploy import deploy_agent_nft, read_deployment
from chain.factory import make_chain
from chain.follower import EventFollower
from chain.transactions import TxReverted, TxSender, is_transient
from chain.wallets import LocalWallets, Signers, load_minter
from core.db import Database
from core.errors import (
    AuthError,
    ChainError,
    ChainUnavailableError,
    ConflictError,
    NotFoundError,
    NotOwnerError,
    ValidationError,
)
from core.files import atomic_write
from core.principal import Principal
from core.settings import Settings

if TYPE_CHECKING:
    from core.jobs import JobService, JobView

log = logging.getLogger(__name__)

MINT_JOB = "chain.mint"
ANCHOR_JOB = "chain.anchor"
DEV_FUNDS_WEI = 100 * 10**18
SIGNATURE_TTL_S = 3600
TX_WAIT_S = 60.0


class ChainInfo(BaseModel):
    kind: str
    chain_id: int
    rpc_url: str | None
    contract: str | None
    token_account_registry: str | None
    token_account_implementation: str | None
    minter: str | None
    royalty_bps: int | None
    block: int | None
    reachable: bool


class ChainStatus(BaseModel):
    """What the agent page shows about an agent's token."""

    agent_id: str
    minted: bool
    mint_state: str | None
    token_id: str | None
    chain_id: int | None
    contract: str | None
    owner: str | None
    owner_source: str  # "chain" (read now), "cache" (node unreachable) or "draft" (not minted)
    card_version: int | None
    chain_card_hash: str | None
    served_card_hash: str
    matches: bool | None  # None: nothing anchored yet
    anchor_pending: bool
    token_bound_account: str | None
    royalty_receiver: str | None
    royalty_bps: int | None
    mint_job: Any | None = None
    reachable: bool


class VerifyView(BaseModel):
    agent_id: str
    token_id: str
    served_card_hash: str
    chain_card_hash: str
    chain_card_version: int
    matches: bool


class AnchorRequest(BaseModel):
    """An EIP-712 ``CardUpdate`` for the holder to sign (``eth_signTypedData_v4``)."""

    agent_id: str
    token_id: str
    card_hash: str
    version: int
    deadline: int
    typed_data: dict[str, Any]
    already_anchored: bool


class ChainService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        agents: AgentService,
        jobs: JobService,
        chain: Chain | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.agents = agents
        self.jobs = jobs
        self.chain: Chain = chain or make_chain(settings)
        self._owns_chain = chain is None  # a node handed in is stopped by whoever started it
        self.wallets = LocalWallets(settings.wallets_dir, settings.keystore_scrypt_n)
        self.signers = Signers()
        self.auth = AuthService(settings, db, lambda: self.chain_id, self.wallets, self.signers)
        self._lock = threading.RLock()
        self._nft: AgentNFT | None = None
        self._sender: TxSender | None = None
        self._follower: EventFollower | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        agents.listeners.append(self)

    # ----- lifecycle --------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._nft is not None

    @property
    def chain_id(self) -> int:
        """The chain sign-in messages must name (known without starting a managed anvil)."""
        if self._nft is not None:
            return self._nft.deployment.chain_id
        if self.settings.chain_id is not None:
            return self.settings.chain_id
        if self.chain.kind == "anvil":
            return int(self.chain.chain_id)  # type: ignore[attr-defined]
        return int(self.ensure_started().deployment.chain_id)

    def start(self, follow: bool = True) -> AgentNFT:
        """Start the node (anvil), load the minter, deploy if needed, start the follower."""
        with self._lock:
            if self._nft is None:
                try:
                    self._nft = self._connect()
                except Exception as exc:
                    if is_transient(exc):
                        raise ChainUnavailableError(
                            f"the chain node is unreachable: {exc}"
                        ) from exc
                    raise
            if follow and self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._follow_loop, name="anima-chain-follower", daemon=True
                )
                self._thread.start()
            return self._nft

    def ensure_started(self) -> AgentNFT:
        return self._nft if self._nft is not None else self.start()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)
        if self._owns_chain:
            self.chain.stop()

    def close(self) -> None:
        self.stop()

    def _connect(self) -> AgentNFT:
        self.chain.start()
        w3 = self.chain.web3
        chain_id = int(w3.eth.chain_id)
        if self.settings.chain_id is not None and self.settings.chain_id != chain_id:
            raise ChainError(
                f"the node at {self.chain.rpc_url} is chain {chain_id}, "
                f"but ANIMA_CHAIN_ID is {self.settings.chain_id}"
            )
        minter = load_minter(self.settings, self.chain.is_dev)
        if self.chain.is_dev and w3.eth.get_balance(minter.address) < DEV_FUNDS_WEI // 10:
            self.chain.fund(minter.address, DEV_FUNDS_WEI)
        deployment = self._deployment(w3, minter)
        nft = AgentNFT(w3, deployment)
        self._sender = TxSender(w3, minter, self.db, chain_id)
        self._follower = EventFollower(self.db, nft, self.settings.chain_confirmations)
        log.info(
            "chain %s (%s): AgentNFT %s, minter %s",
            chain_id,
            self.chain.kind,
            nft.address,
            minter.address,
        )
        return nft

    def _deployment(self, w3: Any, minter: Any) -> Deployment:
        if self.settings.chain_contract:
            return read_deployment(w3, self.settings.chain_contract)
        path = self.settings.chain_dir / "deployment.json"
        chain_id = int(w3.eth.chain_id)
        if path.is_file():
            saved = Deployment.from_json(path.read_text())
            if saved.chain_id == chain_id and w3.eth.get_code(saved.address):
                return saved
            log.warning(
                "the contract recorded in %s is not on this chain (was the chain reset?); "
                "tokens minted there are not visible here",
                path,
            )
        auto = self.settings.chain_auto_deploy
        if auto is None:
            auto = self.chain.is_dev
        if not auto:
            raise ChainError(
                "no AgentNFT contract is configured: set ANIMA_CHAIN_CONTRACT, or deploy one "
                "with `python app.py chain deploy`"
            )
        return self.deploy(w3, minter)

    def deploy(self, w3: Any = None, minter: Any = None) -> Deployment:
        """Deploy the contracts and remember where (``python app.py chain deploy``)."""
        if w3 is None:
            self.chain.start()
            w3 = self.chain.web3
        minter = minter or load_minter(self.settings, self.chain.is_dev)
        deployment, _gas = deploy_agent_nft(
            w3,
            minter,
            base_uri=f"{self.settings.resolved_public_url}/api/nft/",
            royalty_bps=self.settings.chain_royalty_bps,
        )
        self.settings.chain_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.settings.chain_dir / "deployment.json", deployment.to_json().encode())
        return deployment

    def _follow_loop(self) -> None:
        while not self._stop.wait(self.settings.chain_poll_interval_s):
            try:
                self.tick()
            except Exception as exc:  # the next tick tries again
                log.debug("chain follower: %s", exc)

    def tick(self) -> int:
        """One round of upkeep: restart a managed node that died, then apply new events."""
        if self.chain.kind == "anvil" and not self.chain.is_up():
            log.warning("the anvil node stopped; restarting it (its state is kept)")
            self.chain.start()
        return self.sync()

    def sync(self) -> int:
        """Apply new contract events to Anima's copy of every token now."""
        self.ensure_started()
        assert self._follower is not None
        try:
            return self._follower.sync()
        except Exception as exc:
            if is_transient(exc):
                raise ChainUnavailableError(f"the chain node is unreachable: {exc}") from exc
            raise

    def info(self) -> ChainInfo:
        nft = self._nft
        reachable = self.chain.is_up()
        return ChainInfo(
            kind=self.chain.kind,
            chain_id=self.chain_id,
            rpc_url=self.chain.rpc_url,
            contract=nft.address if nft else None,
            token_account_registry=nft.deployment.registry if nft else None,
            token_account_implementation=nft.deployment.implementation if nft else None,
            minter=self._sender.address if self._sender else None,
            royalty_bps=_quiet(nft.royalty_bps) if nft and reachable else None,
            block=_quiet(lambda: int(self.chain.web3.eth.block_number)) if reachable else None,
            reachable=reachable,
        )

    # ----- the owner check ---------------------------------------------------------------------
    def require_owner(self, principal: Principal, agent_id: str) -> AgentView:
        """THE check before any change to an agent or to what belongs to it.

        Returns the agent when ``principal`` may change it; raises ``NotFoundError`` (404),
        ``AuthError`` (401: sign in), ``NotOwnerError`` (403: signed in as someone else) or
        ``ChainUnavailableError`` (503: the holder of a minted agent cannot be read now).
        """
        agent = self.agents.get_agent(agent_id)
        if principal.is_system:  # the app itself (jobs, the follower): no holder to read
            return agent
        if agent.mint_state == "minted":
            owner, whose = self.holder(agent), "its token holder"
        else:
            owner, whose = agent.owner_address, "the wallet that created it"
        self.require_address(principal, owner, f"agent '{agent.name}'", whose)
        return agent

    def require_address(
        self,
        principal: Principal,
        owner: str | None,
        what: str,
        whose: str = "the wallet that created it",
    ) -> None:
        """The rule behind every owner check: ``owner`` (or, for an anonymous draft whose
        ``owner`` is None, anyone while ``ANIMA_AUTH_ANONYMOUS_EDITS`` is on) may change
        ``what``; raises ``AuthError`` (401) or ``NotOwnerError`` (403) otherwise."""
        if principal.is_system:
            return
        if owner is None:
            if self.settings.auth_anonymous_edits or principal.signed_in:
                return
            raise AuthError(
                f"sign in with a wallet to change {what} (ANIMA_AUTH_ANONYMOUS_EDITS=false)"
            )
        if principal.is_address(owner):
            return
        if not principal.signed_in:
            raise AuthError(f"{what} belongs to {owner} ({whose}); sign in with that wallet")
        raise NotOwnerError(
            f"{what} belongs to {owner} ({whose}); you are signed in as {principal.address}"
        )

    def require_creator(self, principal: Principal) -> None:
        """Whether ``principal`` may create (or import) an agent at all."""
        if principal.is_system:
            return
        if not principal.signed_in and not self.settings.auth_anonymous_edits:
            raise AuthError(
                "sign in with a wallet to create agents (ANIMA_AUTH_ANONYMOUS_EDITS=false)"
            )

    def holder(self, agent: AgentView) -> str:
        """The token holder read from the chain now; refreshes the stored copy if it moved."""
        if agent.token_id is None:
            raise ConflictError(f"agent '{agent.name}' is not minted")
        nft = self.ensure_started()
        if agent.token_contract and agent.token_contract.lower() != nft.address.lower():
            raise ChainError(
                f"agent '{agent.name}' was minted on contract {agent.token_contract}, but this app "
                f"uses {nft.address}; its owner cannot be checked"
            )
        try:
            owner = nft.owner_of(int(agent.token_id))
        except Exception as exc:
            if is_transient(exc):
                raise ChainUnavailableError(
                    f"the chain node is unreachable, so the owner of '{agent.name}' cannot be "
                    "checked; try again in a moment"
                ) from exc
            raise
        if owner is None:
            raise ChainError(
                f"token {agent.token_id} of '{agent.name}' does not exist on chain "
                f"{nft.deployment.chain_id} (was the chain reset?)"
            )
        if agent.owner_address is None or agent.owner_address.lower() != owner.lower():
            self._set_state(agent.id, owner_address=owner)
        return owner

    # ----- minting ------------------------------------------------------------------------------
    def request_mint(self, principal: Principal, agent_id: str) -> JobView:
        """Mint the agent to the signed-in wallet, as a durable job (202 + the job)."""
        if not principal.signed_in:
            raise AuthError("sign in with a wallet to mint: the token is minted to your address")
        agent = self.require_owner(principal, agent_id)
        if agent.mint_state == "minted":
            raise ConflictError(f"agent '{agent.name}' is already minted as token {agent.token_id}")
        running = self.mint_job(agent_id)
        if running is not None and not running.finished:
            return running
        assert principal.address is not None
        return self._submit_mint(agent_id, principal.address)

    def _submit_mint(self, agent_id: str, to: str) -> JobView:
        token_id = token_id_of(agent_id)
        with self.db.session() as s:
            claimed = s.execute(
                update(AgentRecord)
                .where(
                    AgentRecord.id == agent_id,
                    (AgentRecord.mint_state.is_(None)) | (AgentRecord.mint_state == "failed"),
                )
                .values(owner_address=to, token_id=str(token_id), mint_state="pending")
            )
        if claimed.rowcount != 1:
            running = self.mint_job(agent_id)
            if running is not None:
                return running
            raise ConflictError("a mint of this agent is already under way")
        try:
            return self.jobs.submit(
                MINT_JOB,
                params={"agent_id": agent_id, "to": to},
                owner=to,
                target_type="agent",
                target_id=agent_id,
            )
        except Exception:
            self._set_state(agent_id, mint_state="failed")
            raise

    def mint_job(self, agent_id: str) -> JobView | None:
        jobs = self.jobs.list(kind=MINT_JOB, target_type="agent", target_id=agent_id, limit=1)
        return jobs[0] if jobs else None

    def mint_step(
        self, agent_id: str, to: str, key: str, progress: Callable[..., None] | None = None
    ) -> dict[str, Any]:
        """The mint job's one durable step: check the chain, send at most once, record.

        Runs again from its start after a crash or while the node is down, so it first asks
        the chain whether the token exists; only if not does it send (and ``TxSender``
        re-broadcasts the transaction an earlier run recorded rather than signing another).
        """
        nft = self._wait_for_node(progress)
        token_id = token_id_of(agent_id)
        result: dict[str, Any] = {"token_id": str(token_id), "already_minted": True}
        try:
            owner = nft.owner_of(token_id)
            if owner is None:
                agent = self._agent_or_none(agent_id)
                if agent is None:
                    return {"status": "gone"}
                if progress:
                    progress(0, 1, "sending the mint transaction")
                assert self._sender is not None
                try:
                    sent = self._sender.send(
                        key, "mint", nft.mint_call(to, agent_id, agent.content_hash),
                        agent_id=agent_id, wait_s=TX_WAIT_S,
                    )  # fmt: skip
                    result.update(
                        already_minted=False,
                        tx_hash=sent.tx_hash,
                        block=sent.block,
                        gas_used=sent.gas_used,
                    )
                except TxReverted as exc:
                    if nft.owner_of(token_id) is None:
                        return {"status": "reverted", "error": exc.reason}
                owner = nft.owner_of(token_id)
            card = nft.card_of(token_id)
        except Exception as exc:
            if is_transient(exc):
                raise ChainUnavailableError(f"the chain node is unreachable: {exc}") from exc
            raise
        assert owner is not None and card is not None
        self._set_state(
            agent_id,
            owner_address=owner,
            token_id=str(token_id),
            mint_state="minted",
            token_contract=nft.address,
            chain_id=nft.deployment.chain_id,
            chain_card_hash=card[0],
            chain_card_version=card[1],
        )
        return {
            **result,
            "status": "minted",
            "owner": owner,
            "contract": nft.address,
            "card_hash": card[0],
        }

    def mark_mint_failed(self, agent_id: str) -> None:
        with self.db.session() as s:
            s.execute(
                update(AgentRecord)
                .where(AgentRecord.id == agent_id, AgentRecord.mint_state == "pending")
                .values(mint_state="failed")
            )

    def _wait_for_node(self, progress: Callable[..., None] | None = None) -> AgentNFT:
        """The contract client once the node answers; raises after ``chain_node_wait_s``."""
        deadline = time.monotonic() + self.settings.chain_node_wait_s
        told = False
        while True:
            try:
                nft = self.ensure_started()
                if self.chain.is_up():
                    return nft
            except ChainUnavailableError:
                pass
            if time.monotonic() > deadline:
                raise ChainUnavailableError(
                    f"the chain node ({self.chain.rpc_url or self.chain.kind}) did not answer "
                    f"for {self.settings.chain_node_wait_s:.0f} s"
                )
            if progress and not told:
                progress(
                    0, 1, f"waiting for the chain node ({self.chain.rpc_url or self.chain.kind})"
                )
                told = True
            time.sleep(0.25)

    # ----- card anchoring -----------------------------------------------------------------------
    def request_anchor(self, agent_id: str) -> JobView | None:
        """Anchor the agent's current card hash on chain (a job), if it is minted."""
        agent = self.agents.get_agent(agent_id)
        if agent.mint_state != "minted":
            return None
        return self.jobs.submit(
            ANCHOR_JOB,
            params={"agent_id": agent_id},
            owner=agent.owner_address,
            target_type="agent",
            target_id=agent_id,
            idempotency_key=f"anchor:{agent_id}:{agent.content_hash}:{agent.chain_card_version}",
        )

    def anchor_request(self, agent_id: str) -> AnchorRequest:
        """The EIP-712 message the holder signs to anchor the served card (browser wallets)."""
        agent = self.agents.get_agent(agent_id)
        if agent.mint_state != "minted" or agent.token_id is None:
            raise ConflictError(f"agent '{agent.name}' is not minted yet")
        nft = self.ensure_started()
        token_id = int(agent.token_id)
        card = self._card_now(nft, token_id, agent)
        deadline = int(time.time()) + SIGNATURE_TTL_S
        return AnchorRequest(
            agent_id=agent_id,
            token_id=agent.token_id,
            card_hash=agent.content_hash,
            version=card[1],
            deadline=deadline,
            typed_data=nft.typed_update(token_id, agent.content_hash, card[1], deadline),
            already_anchored=card[0] == agent.content_hash,
        )

    def submit_anchor(
        self,
        principal: Principal,
        agent_id: str,
        *,
        card_hash: str,
        version: int,
        deadline: int,
        signature: str,
    ) -> JobView:
        """Relay a holder's signed ``CardUpdate`` (checked here first, then sent by a job)."""
        agent = self.require_owner(principal, agent_id)
        if agent.mint_state != "minted" or agent.token_id is None:
            raise ConflictError(f"agent '{agent.name}' is not minted yet")
        if card_hash.lower() != agent.content_hash.lower():
            raise ValidationError(
                f"the signed card hash {card_hash} is not the served card's ({agent.content_hash})"
            )
        if deadline <= int(time.time()):
            raise AuthError("the signed card update expired; sign it again")
        nft = self.ensure_started()
        typed = nft.typed_update(int(agent.token_id), card_hash, version, deadline)
        try:
            signer = recover_card_update_signer(typed, signature)
        except Exception as exc:
            raise AuthError("the card-update signature is malformed") from exc
        if not principal.is_address(signer):
            raise AuthError(f"the card update was signed by {signer}, not by {principal.address}")
        return self.jobs.submit(
            ANCHOR_JOB,
            params={
                "agent_id": agent_id,
                "card_hash": card_hash,
                "version": version,
                "deadline": deadline,
                "signer": signer,
                "signature": signature,
            },
            owner=signer,
            target_type="agent",
            target_id=agent_id,
            idempotency_key=f"anchor-sig:{agent_id}:{card_hash}:{version}",
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
        """The anchor job's durable step: relay an EIP-712 card update at most once."""
        nft = self._wait_for_node()
        agent = self._agent_or_none(agent_id)
        if agent is None:
            return {"status": "gone"}
        if agent.token_id is None:
            return {"status": "not_minted"}
        token_id = int(agent.token_id)
        target = card_hash or agent.content_hash
        try:
            current = nft.card_of(token_id)
            if current is None:
                return {"status": "not_minted"}
            if current[0].lower() == target.lower():
                self._record_card(agent_id, current)
                return {
                    "status": "anchored",
                    "card_hash": current[0],
                    "version": current[1],
                    "already": True,
                }
            if signature is None:
                owner = nft.owner_of(token_id)
                account = self.signers.for_address(owner)
                if account is None:
                    return {"status": "awaiting_signature", "owner": owner, "card_hash": target}
                version, deadline = current[1], int(time.time()) + SIGNATURE_TTL_S
                signature = sign_card_update(
                    account, nft.typed_update(token_id, target, version, deadline)
                )
                signer = account.address
            elif version != current[1]:
                return {
                    "status": "reverted",
                    "error": f"the signature is for card version {version}, but the token is at "
                    f"version {current[1]}: sign the update again",
                }
            assert self._sender is not None and version is not None and deadline is not None
            assert signer is not None
            try:
                call = nft.update_with_sig_call(
                    token_id, target, version, deadline, signer, signature
                )
                sent = self._sender.send(key, "anchor", call, agent_id=agent_id, wait_s=TX_WAIT_S)
            except TxReverted as exc:
                return {"status": "reverted", "error": exc.reason}
            card = nft.card_of(token_id)
        except Exception as exc:
            if is_transient(exc):
                raise ChainUnavailableError(f"the chain node is unreachable: {exc}") from exc
            raise
        assert card is not None
        self._record_card(agent_id, card)
        return {
            "status": "anchored",
            "card_hash": card[0],
            "version": card[1],
            "tx_hash": sent.tx_hash,
            "gas_used": sent.gas_used,
        }

    def reconcile_anchors(self, address: str) -> list[str]:
        """Anchor every minted card of ``address`` that changed since its last anchor."""
        with self.db.session() as s:
            ids = s.scalars(
                select(AgentRecord.id).where(
                    AgentRecord.mint_state == "minted",
                    AgentRecord.owner_address == address,
                    (AgentRecord.chain_card_hash.is_(None))
                    | (AgentRecord.chain_card_hash != AgentRecord.content_hash),
                )
            ).all()
        submitted = []
        for agent_id in ids:
            try:
                if self.request_anchor(agent_id) is not None:
                    submitted.append(agent_id)
            except Exception as exc:
                log.warning("could not queue the card anchor of %s: %s", agent_id, exc)
        return submitted

    # ----- status, verification, metadata ---------------------------------------------------
    def status(self, agent_id: str) -> ChainStatus:
        agent = self.agents.get_agent(agent_id)
        served = cards.content_hash(self.agents.get_card(agent_id))
        job = self.mint_job(agent_id)
        minted = agent.mint_state == "minted"
        owner, source, card = agent.owner_address, "draft", None
        reachable = False
        tba = receiver = None
        bps = None
        if agent.token_id is not None:
            try:
                nft = self.ensure_started()
                reachable = self.chain.is_up()
            except (ChainUnavailableError, ChainError):
                nft = None
            if nft is not None:
                token_id = int(agent.token_id)
                tba = nft.token_account(token_id)
                if minted and reachable:
                    try:
                        owner = self.holder(agent)
                        source = "chain"
                        card = nft.card_of(token_id)
                        if card is not None:
                            self._record_card(agent_id, card)
                        receiver, _ = nft.royalty_info(token_id, 10_000)
                        bps = nft.royalty_bps()
                    except (ChainUnavailableError, ChainError):
                        source = "cache"
                elif minted:
                    source = "cache"
        if card is None and agent.chain_card_hash is not None:
            card = (agent.chain_card_hash, agent.chain_card_version or 0)
        chain_hash = card[0] if card else None
        return ChainStatus(
            agent_id=agent_id,
            minted=minted,
            mint_state=agent.mint_state,
            token_id=agent.token_id,
            chain_id=agent.chain_id,
            contract=agent.token_contract,
            owner=owner,
            owner_source=source,
            card_version=card[1] if card else None,
            chain_card_hash=chain_hash,
            served_card_hash=served,
            matches=None if chain_hash is None else chain_hash.lower() == served.lower(),
            anchor_pending=minted and (chain_hash or "").lower() != agent.content_hash.lower(),
            token_bound_account=tba,
            royalty_receiver=receiver,
            royalty_bps=bps,
            mint_job=job.model_dump(mode="json") if job else None,
            reachable=reachable,
        )

    def verify(self, agent_id: str) -> VerifyView:
        """Recompute the served card's hash and compare it with the chain's, read now."""
        agent = self.agents.get_agent(agent_id)
        if agent.mint_state != "minted" or agent.token_id is None:
            raise ConflictError(
                f"agent '{agent.name}' is not minted: there is nothing to verify against"
            )
        nft = self.ensure_started()
        served = cards.content_hash(self.agents.get_card(agent_id))
        card = self._card_now(nft, int(agent.token_id), agent)
        return VerifyView(
            agent_id=agent_id,
            token_id=agent.token_id,
            served_card_hash=served,
            chain_card_hash=card[0],
            chain_card_version=card[1],
            matches=card[0].lower() == served.lower(),
        )

    def metadata(self, token_id: str, base_url: str) -> dict[str, Any]:
        """ERC-721 metadata JSON (what ``tokenURI`` points at; marketplaces read it)."""
        if not token_id.isdigit() or len(token_id) > 78:
            raise ValidationError("a token id is a decimal number")
        with self.db.session() as s:
            agent_id = s.scalars(
                select(AgentRecord.id).where(AgentRecord.token_id == str(int(token_id)))
            ).first()
        if agent_id is None:
            raise NotFoundError(f"no agent has token {token_id}")
        agent = self.agents.get_agent(agent_id)
        data = agent.data
        base = (self.settings.public_url or base_url).rstrip("/")
        served = cards.content_hash(self.agents.get_card(agent_id))
        attributes: list[dict[str, Any]] = [
            {
                "trait_type": "Card version",
                "value": agent.chain_card_version or 0,
                "display_type": "number",
            },
            {"trait_type": "Card spec", "value": agent.spec},
        ]
        if data.get("creator"):
            attributes.append({"trait_type": "Creator", "value": data["creator"]})
        attributes += [{"trait_type": "Tag", "value": t} for t in (data.get("tags") or [])[:20]]
        meta: dict[str, Any] = {
            "name": agent.name,
            "description": (data.get("creator_notes") or data.get("description") or "")[:1000],
            "external_url": f"{base}/ui/",
            "attributes": attributes,
            "card_hash": agent.chain_card_hash or served,
            "served_card_hash": served,
            "card_version": agent.chain_card_version,
            "agent_id": agent_id,
        }
        if agent.has_avatar:
            meta["image"] = f"{base}/api/agents/{agent_id}/avatar"
        if self._nft is not None:
            meta["token_bound_account"] = self._nft.token_account(int(agent.token_id or token_id))
        return meta

    # ----- agent events (AgentService listener) -----------------------------------------------
    def agent_created(self, agent: AgentView) -> None:
        """Mint at once when a signed-in wallet created the agent (ANIMA_CHAIN_MINT_ON_CREATE)."""
        if agent.owner_address and self.settings.chain_mint_on_create:
            self._submit_mint(agent.id, agent.owner_address)

    def card_changed(self, agent: AgentView) -> None:
        """Each accepted edit of a minted card is anchored on chain (a job)."""
        if agent.mint_state == "minted":
            self.request_anchor(agent.id)

    def agent_deleted(self, agent_id: str) -> None:
        """Pending mints and anchors of a deleted agent end as cancelled (its token stays)."""
        self.jobs.cancel_for_target("agent", agent_id, "the agent was deleted")

    # ----- internals ----------------------------------------------------------------------------
    def _card_now(self, nft: AgentNFT, token_id: int, agent: AgentView) -> tuple[str, int]:
        try:
            card = nft.card_of(token_id)
        except Exception as exc:
            if is_transient(exc):
                raise ChainUnavailableError(f"the chain node is unreachable: {exc}") from exc
            raise
        if card is None:
            raise ChainError(f"token {token_id} of '{agent.name}' does not exist on this chain")
        return card

    def _record_card(self, agent_id: str, card: tuple[str, int]) -> None:
        self._set_state(agent_id, chain_card_hash=card[0], chain_card_version=card[1])

    def _set_state(self, agent_id: str, **values: Any) -> None:
        """Write the chain columns of an agent row (the only columns chain/ writes)."""
        with self.db.session() as s:
            s.execute(update(AgentRecord).where(AgentRecord.id == agent_id).values(**values))

    def _agent_or_none(self, agent_id: str) -> AgentView | None:
        try:
            return self.agents.get_agent(agent_id)
        except NotFoundError:
            return None


def _quiet(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None
