"""What an agent's token looks like from outside: the agent page's status and the ERC-721
metadata that ``tokenURI`` points at (marketplaces and wallets read it). Reads only: the
holder is read from the chain when the node answers, else the stored copy is shown as such."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agents import cards
from agents.images import render_default_avatar
from chain.agent_rows import AgentRows
from chain.anchoring import Anchoring
from chain.minting import Minting
from chain.node import ChainNode
from chain.ownership import Ownership
from core.errors import ChainError, ChainUnavailableError, NotFoundError, ValidationError
from core.settings import Settings

if TYPE_CHECKING:
    from agents.service import AgentView


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


@dataclass
class _OnChain:
    """What the node says about a token now (the stored copy where it cannot be read)."""

    owner: str | None
    source: str
    card: tuple[str, int] | None = None
    reachable: bool = False
    token_account: str | None = None
    royalty_receiver: str | None = None
    royalty_bps: int | None = None


def no_trait(_agent_id: str) -> Any:
    return None


class Tokens:
    """Token status and metadata. ``price_label`` and ``revenue_share_bps`` are seams the
    economy fills (container.py): the agent's price for people (``None``: free) and the part
    of its income that its revenue shares receive (``None``: no shares issued)."""

    def __init__(
        self,
        settings: Settings,
        rows: AgentRows,
        node: ChainNode,
        owners: Ownership,
        minting: Minting,
        anchoring: Anchoring,
    ) -> None:
        self.settings = settings
        self.rows = rows
        self.node = node
        self.owners = owners
        self.minting = minting
        self.anchoring = anchoring
        self.price_label: Callable[[str], str | None] = no_trait
        self.revenue_share_bps: Callable[[str], int | None] = no_trait

    def status(self, agent_id: str) -> ChainStatus:
        agent = self.rows.get_agent(agent_id)
        served = cards.content_hash(self.rows.get_card(agent_id))
        job = self.minting.job(agent_id)
        minted = agent.mint_state == "minted"
        now = self._read_token(agent)
        card = now.card
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
            owner=now.owner,
            owner_source=now.source,
            card_version=card[1] if card else None,
            chain_card_hash=chain_hash,
            served_card_hash=served,
            matches=None if chain_hash is None else chain_hash.lower() == served.lower(),
            anchor_pending=minted and (chain_hash or "").lower() != agent.content_hash.lower(),
            token_bound_account=now.token_account,
            royalty_receiver=now.royalty_receiver,
            royalty_bps=now.royalty_bps,
            mint_job=job.model_dump(mode="json") if job else None,
            reachable=now.reachable,
        )

    def _read_token(self, agent: AgentView) -> _OnChain:
        now = _OnChain(owner=agent.owner_address, source="draft")
        if agent.token_id is None:
            return now
        try:
            nft = self.node.ensure_started()
            now.reachable = self.node.chain.is_up()
        except (ChainUnavailableError, ChainError):
            return now
        token_id = int(agent.token_id)
        now.token_account = nft.token_account(token_id)
        if agent.mint_state != "minted":
            return now
        if not now.reachable:
            now.source = "cache"
            return now
        try:
            now.owner = self.owners.holder(agent)
            now.source = "chain"
            now.card = nft.card_of(token_id)
            if now.card is not None:
                self.anchoring.record_card(agent.id, now.card)
            now.royalty_receiver, _ = nft.royalty_info(token_id, 10_000)
            now.royalty_bps = nft.royalty_bps()
        except (ChainUnavailableError, ChainError):
            now.source = "cache"
        return now

    def metadata(self, token_id: str, base_url: str) -> dict[str, Any]:
        """ERC-721 metadata JSON (what ``tokenURI`` points at; marketplaces read it)."""
        if not token_id.isdigit() or len(token_id) > 78:
            raise ValidationError("a token id is a decimal number")
        agent = self.rows.find_by_token(str(int(token_id)))
        if agent is None:
            raise NotFoundError(f"no agent has token {token_id}")
        data = agent.data
        base = (self.settings.server.public_url or base_url).rstrip("/")
        served = cards.content_hash(self.rows.get_card(agent.id))
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
            "agent_id": agent.id,
        }
        price = self.price_label(agent.id)
        attributes.append({"trait_type": "Price", "value": price or "free"})
        share = self.revenue_share_bps(agent.id)
        if share is not None:
            attributes.append(
                {"trait_type": "Revenue share (bps)", "value": share, "display_type": "number"}
            )
        # Every token links an image wallets can fetch: the avatar, or the default one the
        # app draws for agents without (the studio shows the same).
        if agent.has_avatar:
            meta["image"] = f"{base}/api/agents/{agent.id}/avatar"
        else:
            meta["image"] = f"{base}/api/nft/{int(token_id)}/image"
        if self.node.nft is not None:
            meta["token_bound_account"] = self.node.nft.token_account(
                int(agent.token_id or token_id)
            )
        return meta

    def image(self, token_id: str) -> bytes:
        """The token's image: the agent's avatar, or its default avatar (a PNG either way)."""
        if not token_id.isdigit() or len(token_id) > 78:
            raise ValidationError("a token id is a decimal number")
        agent = self.rows.find_by_token(str(int(token_id)))
        if agent is None:
            raise NotFoundError(f"no agent has token {token_id}")
        return self.rows.avatar(agent.id) or render_default_avatar(agent.name)
