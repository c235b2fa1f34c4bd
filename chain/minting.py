"""Minting an agent as a token: requested here, sent by a durable job (``chain/jobs.py``).

The request claims the agent (``mint_state`` pending) before the job exists, so two requests
never both mint; the job's one step asks the chain first and sends at most once
(``chain.transactions``), so a retry after a crash or while the node is down is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chain.agent_rows import AgentRows, agent_or_none
from chain.contract import AgentNFT, token_id_of
from chain.node import TX_WAIT_S, ChainNode
from chain.ownership import Ownership
from chain.transactions import TxReverted, reaching_node
from core.errors import AuthError, ConflictError
from core.principal import Principal

if TYPE_CHECKING:
    from agents.service import AgentView
    from core.jobs import JobService, JobView

MINT_JOB = "chain.mint"


class Minting:
    def __init__(
        self, rows: AgentRows, jobs: JobService, node: ChainNode, owners: Ownership
    ) -> None:
        self.rows = rows
        self.jobs = jobs
        self.node = node
        self.owners = owners

    def request_mint(self, agent_id: str, *, principal: Principal) -> JobView:
        """Mint the agent to the signed-in wallet, as a durable job (202 + the job)."""
        if not principal.signed_in:
            raise AuthError("sign in with a wallet to mint: the token is minted to your address")
        agent = self.owners.require_owner(principal, agent_id)
        if agent.mint_state == "minted":
            raise ConflictError(f"agent '{agent.name}' is already minted as token {agent.token_id}")
        running = self.job(agent_id)
        if running is not None and not running.finished:
            return running
        assert principal.address is not None
        return self.submit(agent_id, principal.address)

    def submit(self, agent_id: str, to: str) -> JobView:
        """Claim the agent for a mint to ``to`` and start the job (the caller was checked)."""
        claimed = self.rows.set_mint_state(
            agent_id,
            "pending",
            only_from=(None, "failed"),
            owner=to,
            token_id=str(token_id_of(agent_id)),
        )
        if not claimed:
            running = self.job(agent_id)
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
            self.rows.set_mint_state(agent_id, "failed")
            raise

    def job(self, agent_id: str) -> JobView | None:
        jobs = self.jobs.list(kind=MINT_JOB, target_type="agent", target_id=agent_id, limit=1)
        return jobs[0] if jobs else None

    def step(
        self, agent_id: str, to: str, key: str, progress: Callable[..., None] | None = None
    ) -> dict[str, Any]:
        """The mint job's one durable step: check the chain, send at most once, record.

        Runs again from its start after a crash or while the node is down, so it first asks
        the chain whether the token exists; only if not does it send (and ``TxSender``
        re-broadcasts the transaction an earlier run recorded rather than signing another).
        """
        nft = self.node.wait_until_up(progress)
        token_id = token_id_of(agent_id)
        result: dict[str, Any] = {"token_id": str(token_id), "already_minted": True}
        with reaching_node():
            if nft.owner_of(token_id) is None:
                agent = agent_or_none(self.rows, agent_id)
                if agent is None:
                    return {"status": "gone"}
                sent = self._send(nft, agent, to, key, progress)
                if "status" in sent:
                    return sent
                result.update(sent)
            owner = nft.owner_of(token_id)
            card = nft.card_of(token_id)
        assert owner is not None and card is not None
        self.rows.set_mint_state(
            agent_id,
            "minted",
            owner=owner,
            token_id=str(token_id),
            token_contract=nft.address,
            chain_id=nft.deployment.chain_id,
        )
        self.rows.set_chain_card(agent_id, card[0], card[1])
        return {
            **result,
            "status": "minted",
            "owner": owner,
            "contract": nft.address,
            "card_hash": card[0],
        }

    def _send(
        self,
        nft: AgentNFT,
        agent: AgentView,
        to: str,
        key: str,
        progress: Callable[..., None] | None,
    ) -> dict[str, Any]:
        """Send the mint; what to add to the result, or a final ``status`` if refused."""
        if progress:
            progress(0, 1, "sending the mint transaction")
        call = nft.mint_call(to, agent.id, agent.content_hash)
        try:
            sent = self.node.sender.send(key, "mint", call, agent_id=agent.id, wait_s=TX_WAIT_S)
        except TxReverted as exc:
            # Refused, unless an earlier run's transaction minted it meanwhile.
            if nft.owner_of(token_id_of(agent.id)) is None:
                return {"status": "reverted", "error": exc.reason}
            return {}
        return {
            "already_minted": False,
            "tx_hash": sent.tx_hash,
            "block": sent.block,
            "gas_used": sent.gas_used,
        }

    def mark_failed(self, agent_id: str) -> None:
        self.rows.set_mint_state(agent_id, "failed", only_from=("pending",))
