"""The conversation lifecycle behind ``ChatService``: start, list, read, delete, claim and
adopt chats, and the one check (``_row``) that every method loading a conversation passes.

A conversation belongs to whoever started it (``agents.conversation_access``); keeping the
lifecycle and that check together means a new way to load a chat cannot skip the check.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update

from agents.conversation_access import ConversationAccess
from agents.conversations import (
    ConversationView,
    conversation_row,
    conversation_view,
    new_message,
)
from agents.personas import PersonaView
from agents.prompt import greetings
from agents.records import ConversationRecord, MessageRecord
from agents.service import AgentService
from core.db import Database
from core.errors import NotFoundError
from core.principal import Principal


class ConversationLifecycle:
    """Part of ``ChatService`` (``agents.chat``), which sets these attributes."""

    db: Database
    agents: AgentService
    access: ConversationAccess

    def create_conversation(
        self,
        agent_id: str,
        user_name: str = "User",
        greeting: int = 0,
        persona: PersonaView | None = None,
        *,
        principal: Principal,
    ) -> ConversationView:
        """A new chat that opens with the agent's greeting (the others become swipes); it
        belongs to ``principal`` (its wallet, or its browser's visitor id). With a
        ``persona`` (``PersonaService.for_new_chat``), ``{{user}}`` is its name."""
        owner = self.access.owner_of_new(principal)
        card = self.agents.get_card(agent_id)
        user_name = (user_name or "User").strip()[:100] or "User"
        options = greetings(card.data, persona.name if persona else user_name)
        conv = ConversationRecord(
            id=uuid.uuid4().hex,
            agent_id=agent_id,
            user_name=user_name,
            next_position=1 if options else 0,
            **owner,
            persona_id=persona.id if persona else None,
        )
        with self.db.session() as s:
            s.add(conv)
            if options:
                # Every greeting is a version of the first message (swipes), in card order.
                s.add(new_message(conv.id, 0, "assistant", options, greeting % len(options)))
        return self.get_conversation(conv.id, principal=principal)

    def list_conversations(self, agent_id: str, *, principal: Principal) -> list[ConversationView]:
        """The agent's chats that ``principal`` may read (its own, and shared old ones)."""
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(ConversationRecord)
                .where(ConversationRecord.agent_id == agent_id)
                .where(self.access.visible(principal))
                .order_by(ConversationRecord.updated_at.desc())
            ).all()
            return [conversation_view(r, with_messages=False) for r in rows]

    def get_conversation(self, conversation_id: str, *, principal: Principal) -> ConversationView:
        with self.db.session() as s:
            row = self._row(s, conversation_id, principal)
            return conversation_view(row, with_messages=True)

    def delete_conversation(self, conversation_id: str, *, principal: Principal) -> None:
        with self.db.session() as s:
            s.delete(self._row(s, conversation_id, principal, write=True))

    def claim_conversation(self, conversation_id: str, *, principal: Principal) -> ConversationView:
        """Make a shared conversation (started before chats had owners) the caller's own."""
        with self.db.session() as s:
            row = conversation_row(s, conversation_id)
            self.access.claim(row, principal)
            return conversation_view(row, with_messages=True)

    def adopt_visitor_conversations(self, *, principal: Principal) -> int:
        """Move the conversations of ``principal``'s visitor id to its wallet (on sign-in): an
        anonymous visitor who signs in keeps the chats made before, from any browser.
        Returns how many moved."""
        if principal.address is None or principal.visitor_id is None:
            return 0
        with self.db.session() as s:
            moved = s.execute(
                update(ConversationRecord)
                .where(ConversationRecord.visitor_id == principal.visitor_id)
                .where(ConversationRecord.owner_address.is_(None))
                .values(owner_address=principal.address)
                .execution_options(synchronize_session=False)
            )
            return int(moved.rowcount or 0)

    def require_message(self, message_id: str, *, principal: Principal) -> None:
        """Allow ``principal`` to read message ``message_id`` (e.g. its retrieval trace)."""
        with self.db.session() as s:
            message = s.get(MessageRecord, message_id)
            if message is None:
                raise NotFoundError(f"no message with id {message_id!r}")
            row = conversation_row(s, message.conversation_id)
            if not self.access.allows(row, principal):
                raise NotFoundError(f"no message with id {message_id!r}")

    def _row(
        self, session: Any, conversation_id: str, principal: Principal, *, write: bool = False
    ) -> ConversationRecord:
        """The conversation's row, once ``principal`` may read it (or, with ``write``, change
        it); 404 for a missing one or someone else's, 403 for changing someone else's."""
        row = conversation_row(session, conversation_id)
        self.access.require(row, principal, write=write)
        return row
