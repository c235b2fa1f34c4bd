"""The owner check: who may change an agent, and what belongs to it.

- a **minted** agent is changed only by the current holder of its token, read from the chain
  (``ownerOf``) at the moment of the change, so a transfer made anywhere moves control at once;
  while the node cannot be reached such changes are refused (503), never allowed on stale data;
- an agent **created by a signed-in wallet** but not (yet) minted belongs to that wallet;
- an agent **nobody owns** (created without signing in: local, single-user use) may be changed
  by anyone who can use the app (``ANIMA_AUTH_ANONYMOUS_EDITS``, default true; with false, by
  any signed-in wallet). Minting it makes it the minter's.

``core.principal.SYSTEM`` (the app itself: jobs, the follower, start-up) passes every check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chain.agent_rows import AgentRows
from chain.node import ChainNode
from chain.transactions import reaching_node
from core.errors import AuthError, ChainError, ConflictError, NotOwnerError
from core.principal import Principal
from core.settings import Settings

if TYPE_CHECKING:
    from agents.service import AgentView


class Ownership:
    def __init__(self, settings: Settings, rows: AgentRows, node: ChainNode) -> None:
        self.settings = settings
        self.rows = rows
        self.node = node

    def require_owner(self, principal: Principal, agent_id: str) -> AgentView:
        """THE check before any change to an agent or to what belongs to it.

        Returns the agent when ``principal`` may change it; raises ``NotFoundError`` (404),
        ``AuthError`` (401: sign in), ``NotOwnerError`` (403: signed in as someone else) or
        ``ChainUnavailableError`` (503: the holder of a minted agent cannot be read now).
        """
        agent = self.rows.get_agent(agent_id)
        if principal.is_system:
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
            if self.settings.auth.anonymous_edits or principal.signed_in:
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
        if principal.is_system or principal.signed_in or self.settings.auth.anonymous_edits:
            return
        raise AuthError("sign in with a wallet to create agents (ANIMA_AUTH_ANONYMOUS_EDITS=false)")

    def holder(self, agent: AgentView) -> str:
        """The token holder read from the chain now; refreshes the stored copy if it moved."""
        if agent.token_id is None:
            raise ConflictError(f"agent '{agent.name}' is not minted")
        nft = self.node.ensure_started()
        if agent.token_contract and agent.token_contract.lower() != nft.address.lower():
            raise ChainError(
                f"agent '{agent.name}' was minted on contract {agent.token_contract}, but this app "
                f"uses {nft.address}; its owner cannot be checked"
            )
        unreachable = (
            f"the chain node is unreachable, so the owner of '{agent.name}' cannot be "
            "checked; try again in a moment"
        )
        with reaching_node(unreachable):
            owner = nft.owner_of(int(agent.token_id))
        if owner is None:
            raise ChainError(
                f"token {agent.token_id} of '{agent.name}' does not exist on chain "
                f"{nft.deployment.chain_id} (was the chain reset?)"
            )
        if agent.owner_address is None or agent.owner_address.lower() != owner.lower():
            self.rows.set_owner(agent.id, owner)
        return owner
