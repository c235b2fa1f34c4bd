"""What the chain needs of the agents: reading them, and recording their tokens.

``agents.service.AgentService`` satisfies this Protocol; only it writes agent rows. The chain
names exactly the calls it makes, so a change to the agents package that would break the chain
shows up here, and the agents package never has to know the chain exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from core.errors import NotFoundError

if TYPE_CHECKING:
    from agents.schema import Card
    from agents.service import AgentListener, AgentView


class AgentRows(Protocol):
    # The chain listens for new, edited and deleted agents (to mint and anchor them).
    listeners: list[AgentListener]

    def get_agent(self, agent_id: str) -> AgentView: ...

    def get_card(self, agent_id: str) -> Card: ...

    def find_by_token(self, token_id: str) -> AgentView | None: ...

    def avatar(self, agent_id: str) -> bytes | None: ...

    def unanchored(self, owner: str) -> list[str]: ...

    def set_mint_state(
        self,
        agent_id: str,
        state: str,
        *,
        only_from: tuple[str | None, ...] | None = None,
        owner: str | None = None,
        token_id: str | None = None,
        token_contract: str | None = None,
        chain_id: int | None = None,
    ) -> bool: ...

    def set_owner(self, agent_id: str, address: str) -> None: ...

    def set_chain_card(self, agent_id: str, card_hash: str, version: int) -> None: ...

    def set_token_owner(
        self, token_id: str, owner: str, *, minted_on: tuple[str, int] | None = None
    ) -> int: ...

    def set_token_card(self, token_id: str, card_hash: str, version: int) -> int: ...


def agent_or_none(rows: AgentRows, agent_id: str) -> AgentView | None:
    """The agent, or ``None`` once it was deleted (a job then ends quietly)."""
    try:
        return rows.get_agent(agent_id)
    except NotFoundError:
        return None
