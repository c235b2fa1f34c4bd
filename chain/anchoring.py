"""Card anchoring: the hash of an agent's card, recorded on its token, and checked against it.

Each accepted edit of a minted card is anchored by a durable job (``chain/jobs.py``). The
update is relayed with the holder's EIP-712 signature, so the holder pays no gas: a local
wallet's key signs automatically while its session is open; a browser wallet signs the request
the agent page shows (``anchor_request`` / ``submit_anchor``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agents import cards
from chain.agent_rows import AgentRows, agent_or_none
from chain.contract import AgentNFT, recover_card_update_signer, sign_card_update
from chain.node import TX_WAIT_S, ChainNode
from chain.ownership import Ownership
from chain.transactions import TxReverted, reaching_node
from chain.wallets import Signers
from core.errors import AuthError, ChainError, ConflictError, ValidationError
from core.principal import SYSTEM, Principal

if TYPE_CHECKING:
    from agents.service import AgentView
    from core.jobs import JobService, JobView

log = logging.getLogger(__name__)

ANCHOR_JOB = "chain.anchor"
SIGNATURE_TTL_S = 3600


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


class SignedUpdate(BaseModel):
    """A holder's signature over one ``CardUpdate``, as the job sends it."""

    card_hash: str
    version: int
    deadline: int
    signer: str
    signature: str


class Anchoring:
    def __init__(
        self,
        rows: AgentRows,
        jobs: JobService,
        node: ChainNode,
        owners: Ownership,
        signers: Signers,
    ) -> None:
        self.rows = rows
        self.jobs = jobs
        self.node = node
        self.owners = owners
        self.signers = signers

    # ----- requests -------------------------------------------------------------------------
    def request_anchor(self, agent_id: str, *, principal: Principal) -> JobView | None:
        """Anchor the agent's current card hash on chain (a job), if it is minted."""
        agent = self.owners.require_owner(principal, agent_id)
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
        agent = self.rows.get_agent(agent_id)
        if agent.mint_state != "minted" or agent.token_id is None:
            raise ConflictError(f"agent '{agent.name}' is not minted yet")
        nft = self.node.ensure_started()
        token_id = int(agent.token_id)
        card = self.card_now(nft, token_id, agent)
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
        agent_id: str,
        *,
        principal: Principal,
        card_hash: str,
        version: int,
        deadline: int,
        signature: str,
    ) -> JobView:
        """Relay a holder's signed ``CardUpdate`` (checked here first, then sent by a job)."""
        agent = self.owners.require_owner(principal, agent_id)
        if agent.mint_state != "minted" or agent.token_id is None:
            raise ConflictError(f"agent '{agent.name}' is not minted yet")
        if card_hash.lower() != agent.content_hash.lower():
            raise ValidationError(
                f"the signed card hash {card_hash} is not the served card's ({agent.content_hash})"
            )
        if deadline <= int(time.time()):
            raise AuthError("the signed card update expired; sign it again")
        nft = self.node.ensure_started()
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

    def reconcile_anchors(self, address: str, *, principal: Principal) -> list[str]:
        """Anchor every minted card of ``address`` that changed since its last anchor."""
        self.owners.require_address(principal, address, f"the agents of {address}")
        submitted = []
        for agent_id in self.rows.unanchored(address):
            try:
                # The address was checked above; each job reads the holder again before a
                # local key signs for it, so a card that moved meanwhile is not signed.
                if self.request_anchor(agent_id, principal=SYSTEM) is not None:
                    submitted.append(agent_id)
            except Exception as exc:
                log.warning("could not queue the card anchor of %s: %s", agent_id, exc)
        return submitted

    # ----- the job's step -------------------------------------------------------------------
    def step(self, agent_id: str, key: str, signed: SignedUpdate | None = None) -> dict[str, Any]:
        """The anchor job's durable step: relay an EIP-712 card update at most once."""
        nft = self.node.wait_until_up()
        agent = agent_or_none(self.rows, agent_id)
        if agent is None:
            return {"status": "gone"}
        if agent.token_id is None:
            return {"status": "not_minted"}
        token_id = int(agent.token_id)
        target = signed.card_hash if signed else agent.content_hash
        with reaching_node():
            current = nft.card_of(token_id)
            if current is None:
                return {"status": "not_minted"}
            if current[0].lower() == target.lower():
                self.record_card(agent_id, current)
                return {
                    "status": "anchored",
                    "card_hash": current[0],
                    "version": current[1],
                    "already": True,
                }
            if signed is None:
                signed_or_wait = self._sign_locally(nft, token_id, target, current[1])
                if isinstance(signed_or_wait, dict):
                    return signed_or_wait
                signed = signed_or_wait
            elif signed.version != current[1]:
                return {
                    "status": "reverted",
                    "error": f"the signature is for card version {signed.version}, but the "
                    f"token is at version {current[1]}: sign the update again",
                }
            return self._relay(nft, agent_id, token_id, key, signed)

    def _sign_locally(
        self, nft: AgentNFT, token_id: int, card_hash: str, version: int
    ) -> SignedUpdate | dict[str, Any]:
        """The holder's local key signs, if its session is open; else the job waits for it."""
        owner = nft.owner_of(token_id)
        account = self.signers.for_address(owner)
        if account is None:
            return {"status": "awaiting_signature", "owner": owner, "card_hash": card_hash}
        deadline = int(time.time()) + SIGNATURE_TTL_S
        signature = sign_card_update(
            account, nft.typed_update(token_id, card_hash, version, deadline)
        )
        return SignedUpdate(
            card_hash=card_hash,
            version=version,
            deadline=deadline,
            signer=account.address,
            signature=signature,
        )

    def _relay(
        self, nft: AgentNFT, agent_id: str, token_id: int, key: str, signed: SignedUpdate
    ) -> dict[str, Any]:
        try:
            call = nft.update_with_sig_call(
                token_id,
                signed.card_hash,
                signed.version,
                signed.deadline,
                signed.signer,
                signed.signature,
            )
            sent = self.node.sender.send(key, "anchor", call, agent_id=agent_id, wait_s=TX_WAIT_S)
        except TxReverted as exc:
            return {"status": "reverted", "error": exc.reason}
        card = nft.card_of(token_id)
        assert card is not None
        self.record_card(agent_id, card)
        return {
            "status": "anchored",
            "card_hash": card[0],
            "version": card[1],
            "tx_hash": sent.tx_hash,
            "gas_used": sent.gas_used,
        }

    # ----- verification ---------------------------------------------------------------------
    def verify(self, agent_id: str) -> VerifyView:
        """Recompute the served card's hash and compare it with the chain's, read now."""
        agent = self.rows.get_agent(agent_id)
        if agent.mint_state != "minted" or agent.token_id is None:
            raise ConflictError(
                f"agent '{agent.name}' is not minted: there is nothing to verify against"
            )
        nft = self.node.ensure_started()
        served = cards.content_hash(self.rows.get_card(agent_id))
        card = self.card_now(nft, int(agent.token_id), agent)
        return VerifyView(
            agent_id=agent_id,
            token_id=agent.token_id,
            served_card_hash=served,
            chain_card_hash=card[0],
            chain_card_version=card[1],
            matches=card[0].lower() == served.lower(),
        )

    def card_now(self, nft: AgentNFT, token_id: int, agent: AgentView) -> tuple[str, int]:
        with reaching_node():
            card = nft.card_of(token_id)
        if card is None:
            raise ChainError(f"token {token_id} of '{agent.name}' does not exist on this chain")
        return card

    def record_card(self, agent_id: str, card: tuple[str, int]) -> None:
        self.rows.set_chain_card(agent_id, card[0], card[1])
