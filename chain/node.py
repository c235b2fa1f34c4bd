"""The node behind the service: started once, lazily, and watched while the app runs.

Starting means: start the node (a managed anvil), check its chain id, load the minter (funding
it on a development chain), find or deploy the contract, and build the clients that send
transactions and follow events. Tests and tools that never touch the chain never start one.

Every call to the node goes through ``chain.transactions.reaching_node``, the one place where
a failure to reach it becomes the domain error (``ChainUnavailableError``, 503), so every
caller reports a node that is down the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from chain.agent_rows import AgentRows
from chain.base import Chain
from chain.contract import AgentNFT, Deployment
from chain.deploy import deploy_agent_nft, read_deployment
from chain.factory import make_chain
from chain.follower import EventFollower
from chain.transactions import TxSender, reaching_node
from chain.wallets import load_minter
from core.db import Database
from core.errors import ChainError, ChainUnavailableError
from core.files import atomic_write
from core.settings import Settings

log = logging.getLogger(__name__)

DEV_FUNDS_WEI = 100 * 10**18
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


class ChainNode:
    def __init__(
        self, settings: Settings, db: Database, rows: AgentRows, chain: Chain | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.rows = rows
        self.chain: Chain = chain or make_chain(settings)
        self._owns_chain = chain is None  # a node handed in is stopped by whoever started it
        self._lock = threading.RLock()
        self.nft: AgentNFT | None = None
        self._sender: TxSender | None = None
        self._follower: EventFollower | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def sender(self) -> TxSender:
        """The minter's transaction sender (after ``start``)."""
        assert self._sender is not None, "the chain is not started"
        return self._sender

    @property
    def chain_id(self) -> int:
        """The chain sign-in messages must name (known without starting a managed anvil)."""
        if self.nft is not None:
            return self.nft.deployment.chain_id
        if self.settings.chain.id is not None:
            return self.settings.chain.id
        if self.chain.chain_id is not None:
            return int(self.chain.chain_id)
        return int(self.ensure_started().deployment.chain_id)

    def start(self, follow: bool = True) -> AgentNFT:
        """Start the node (anvil), load the minter, deploy if needed, start the follower."""
        with self._lock:
            if self.nft is None:
                with reaching_node():
                    self.nft = self._connect()
            if follow and self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._follow_loop, name="anima-chain-follower", daemon=True
                )
                self._thread.start()
            return self.nft

    def ensure_started(self) -> AgentNFT:
        return self.nft if self.nft is not None else self.start()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)
        if self._owns_chain:
            self.chain.stop()

    def _connect(self) -> AgentNFT:
        self.chain.start()
        w3 = self.chain.web3
        chain_id = int(w3.eth.chain_id)
        if self.settings.chain.id is not None and self.settings.chain.id != chain_id:
            raise ChainError(
                f"the node at {self.chain.rpc_url} is chain {chain_id}, "
                f"but ANIMA_CHAIN_ID is {self.settings.chain.id}"
            )
        minter = load_minter(self.settings, self.chain.is_dev)
        if self.chain.is_dev and w3.eth.get_balance(minter.address) < DEV_FUNDS_WEI // 10:
            self.chain.fund(minter.address, DEV_FUNDS_WEI)
        nft = AgentNFT(w3, self._deployment(w3, minter))
        self._sender = TxSender(w3, minter, self.db, chain_id)
        self._follower = EventFollower(self.rows, nft, self.db, self.settings.chain.confirmations)
        log.info(
            "chain %s (%s): AgentNFT %s, minter %s",
            chain_id,
            self.chain.kind,
            nft.address,
            minter.address,
        )
        return nft

    def _deployment(self, w3: Any, minter: Any) -> Deployment:
        if self.settings.chain.contract:
            return read_deployment(w3, self.settings.chain.contract)
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
        auto = self.settings.chain.auto_deploy
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
            base_uri=f"{self.settings.server.resolved_public_url}/api/nft/",
            royalty_bps=self.settings.chain.royalty_bps,
        )
        self.settings.chain_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.settings.chain_dir / "deployment.json", deployment.to_json().encode())
        return deployment

    def _follow_loop(self) -> None:
        while not self._stop.wait(self.settings.chain.poll_interval_s):
            try:
                self.tick()
            except Exception as exc:  # the next tick tries again
                log.debug("chain follower: %s", exc)

    def tick(self) -> int:
        """One round of upkeep: restart a managed node that died, then apply new events."""
        self.chain.restart_if_stopped()
        return self.sync()

    def sync(self) -> int:
        """Apply new contract events to Anima's copy of every token now."""
        self.ensure_started()
        assert self._follower is not None
        with reaching_node():
            return self._follower.sync()

    def wait_until_up(self, progress: Callable[..., None] | None = None) -> AgentNFT:
        """The contract client once the node answers; raises after ``chain_node_wait_s``."""
        deadline = time.monotonic() + self.settings.chain.node_wait_s
        where = self.chain.rpc_url or self.chain.kind
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
                    f"the chain node ({where}) did not answer "
                    f"for {self.settings.chain.node_wait_s:.0f} s"
                )
            if progress and not told:
                progress(0, 1, f"waiting for the chain node ({where})")
                told = True
            time.sleep(0.25)

    def info(self) -> ChainInfo:
        nft = self.nft
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


def _quiet(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None
