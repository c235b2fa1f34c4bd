"""What a caller may read of the agents: public ones and the caller's own, any visibility.

A private agent of someone else answers as if it did not exist (404, never 403: its
existence is not told); public and unlisted agents work for anyone by id, only public ones
are listed. The plain reads of ``AgentService`` are the app's own (replies, jobs, the chain),
for code that already holds an id it may use.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, func, or_, select

from agents.records import AgentRecord
from agents.views import VISIBILITIES, AgentView
from core.db import Database
from core.errors import NotFoundError
from core.principal import Principal


class AgentVisibility:
    """Mixed into ``AgentService``: needs its ``db``, ``get_agent`` and ``_view``."""

    db: Database

    def _view(self, row: AgentRecord) -> AgentView:  # provided by AgentService
        raise NotImplementedError

    def get_agent(self, agent_id: str) -> AgentView:  # provided by AgentService
        raise NotImplementedError

    def list_visible(
        self, *, principal: Principal, limit: int | None = None, offset: int = 0
    ) -> list[AgentView]:
        """Public agents and the caller's own (any visibility), oldest first."""
        query = (
            select(AgentRecord)
            .where(self._listed(principal))
            .order_by(AgentRecord.created_at, AgentRecord.id)
        )
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.db.session() as s:
            return [self._view(r) for r in s.scalars(query).all()]

    def count_visible(self, *, principal: Principal) -> int:
        query = select(func.count()).select_from(AgentRecord).where(self._listed(principal))
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

    def get_visible(self, agent_id: str, *, principal: Principal) -> AgentView:
        """The agent, unless it is private and not the caller's: then 404 like a wrong id."""
        view = self.get_agent(agent_id)
        if not _may_see(principal, view.visibility, view.owner_address):
            raise NotFoundError(f"no agent with id {agent_id!r}")
        return view

    def require_visible(self, agent_id: str, *, principal: Principal) -> None:
        """Allow using agent ``agent_id`` by id (chat, card, avatar), or 404 as in
        ``get_visible``."""
        self.get_visible(agent_id, principal=principal)

    @staticmethod
    def _listed(principal: Principal) -> ColumnElement[bool]:
        if principal.is_system:
            return AgentRecord.visibility.in_(VISIBILITIES)
        mine = (
            func.lower(AgentRecord.owner_address) == principal.address.lower()
            if principal.address
            else false()
        )
        return or_(AgentRecord.visibility == "public", mine)


def _may_see(principal: Principal, visibility: str, owner: str | None) -> bool:
    """Public and unlisted agents work for anyone by id; private ones for their owner only
    (a signed-in session or one of the owner's API keys: both carry the owner's address)."""
    return visibility != "private" or principal.is_system or principal.is_address(owner)
