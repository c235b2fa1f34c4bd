"""The columns the chain records about an agent's token (mint state, holder, anchored card).

Only the agent service writes agent rows; the chain package asks for these writes through
the methods here (its ``chain.agent_rows.AgentRows`` Protocol), so a change to how agents are
stored stays in one package.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from agents.records import AgentRecord
from agents.views import AgentView
from core.db import Database


class ChainColumns:
    """Mixed into ``AgentService``: needs its ``db`` and ``_view``."""

    db: Database

    def _view(self, row: AgentRecord) -> AgentView:  # provided by AgentService
        raise NotImplementedError

    # What the chain package records about an agent's token, written only through these
    # methods. They act for the app itself (a mint job, the event follower), so they take no
    # principal: the chain checks the caller before it asks for them, and no route calls them.
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
    ) -> bool:
        """Set ``mint_state`` (and the token's columns that are given). With ``only_from``,
        only while the state is one of those: the check and the write are one UPDATE, so two
        mints of one agent never both start. True when the row changed."""
        values: dict[str, Any] = {"mint_state": state}
        given = {
            "owner_address": owner,
            "token_id": token_id,
            "token_contract": token_contract,
            "chain_id": chain_id,
        }
        values.update({k: v for k, v in given.items() if v is not None})
        query = update(AgentRecord).where(AgentRecord.id == agent_id)
        if only_from is not None:
            allowed = [s for s in only_from if s is not None]
            condition = AgentRecord.mint_state.in_(allowed)
            if None in only_from:
                condition = condition | AgentRecord.mint_state.is_(None)
            query = query.where(condition)
        with self.db.session() as s:
            return s.execute(query.values(**values)).rowcount == 1

    def set_owner(self, agent_id: str, address: str) -> None:
        """The token holder read from the chain (the stored copy lists and pages show)."""
        self._set_chain_columns(AgentRecord.id == agent_id, owner_address=address)

    def set_chain_card(self, agent_id: str, card_hash: str, version: int) -> None:
        """The card hash and version the chain holds for the agent's token."""
        self._set_chain_columns(
            AgentRecord.id == agent_id, chain_card_hash=card_hash, chain_card_version=version
        )

    def set_token_owner(
        self, token_id: str, owner: str, *, minted_on: tuple[str, int] | None = None
    ) -> int:
        """A transfer of token ``token_id``; ``minted_on`` (contract, chain id) when it was the
        mint. Returns how many rows changed."""
        values: dict[str, Any] = {"owner_address": owner}
        if minted_on is not None:
            values.update(mint_state="minted", token_contract=minted_on[0], chain_id=minted_on[1])
        return self._set_chain_columns(AgentRecord.token_id == token_id, **values)

    def set_token_card(self, token_id: str, card_hash: str, version: int) -> int:
        """A card update of token ``token_id``, unless the row already holds a newer version
        (events can be applied again after a crash). Returns how many rows changed."""
        newer = AgentRecord.chain_card_version.is_not(None) & (
            AgentRecord.chain_card_version > version
        )
        return self._set_chain_columns(
            (AgentRecord.token_id == token_id) & ~newer,
            chain_card_hash=card_hash,
            chain_card_version=version,
        )

    def find_by_token(self, token_id: str) -> AgentView | None:
        with self.db.session() as s:
            row = s.scalars(select(AgentRecord).where(AgentRecord.token_id == token_id)).first()
            return self._view(row) if row is not None else None

    def unanchored(self, owner: str) -> list[str]:
        """Ids of the minted agents of ``owner`` whose card changed since it was anchored."""
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(AgentRecord.id).where(
                        AgentRecord.mint_state == "minted",
                        AgentRecord.owner_address == owner,
                        (AgentRecord.chain_card_hash.is_(None))
                        | (AgentRecord.chain_card_hash != AgentRecord.content_hash),
                    )
                ).all()
            )

    def _set_chain_columns(self, where: Any, **values: Any) -> int:
        with self.db.session() as s:
            return int(s.execute(update(AgentRecord).where(where).values(**values)).rowcount)
