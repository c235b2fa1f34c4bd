"""Group chats: one conversation, several agents, and who speaks next.

A group chat is a conversation with members (``conversation_members``, in speaking order);
``conversations.agent_id`` is the first member, so everything that lists or opens an agent's
chats finds the group under it. Each reply is the one-to-one reply path run for the speaking
agent (its card, lorebook, knowledge, generation settings, adapter and voice), with the other
members' lines named in its prompt (``agents.group_turns``).

Who speaks after the user is the chat's ``reply_order``: ``manual`` (nobody until asked),
``round_robin`` (the member after the last speaker) or ``mention`` (a member named in the
user's message, else round robin). ``reply`` lets one member speak now ("let X reply").

Deleting a member agent removes it from its groups (the foreign key cascades) and the chats
go on; when it was the first member, the next one takes over ``conversations.agent_id`` first,
so the cascade from that column never deletes a group that still has members.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event, select, update

from agents.chat import ChatService, ReplyStream
from agents.conversations import (
    ConversationView,
    conversation_view,
    new_message,
    take_positions,
)
from agents.group_turns import REPLY_ORDERS, round_robin, turn_for
from agents.llm.scheduler import tenant_scope
from agents.message_edits import revision_of
from agents.prompt import greetings
from agents.records import AgentRecord, ConversationMemberRecord, ConversationRecord
from agents.service import AgentService
from core.db import Database
from core.errors import ValidationError
from core.principal import Principal

MAX_MEMBERS = 16


class GroupChatService:
    """Starting, arranging and driving group chats. Every method takes the caller; a
    conversation is loaded through the chat service's ``_row``, which checks that the caller
    may read it (or, with ``write``, change it)."""

    def __init__(self, db: Database, agents: AgentService, chat: ChatService) -> None:
        self.db = db
        self.agents = agents
        self.chat = chat

    def create_group(
        self,
        agent_ids: Sequence[str],
        reply_order: str = "round_robin",
        user_name: str = "User",
        *,
        principal: Principal,
    ) -> ConversationView:
        """A new group chat that opens with each member's greeting, in speaking order."""
        ids = self._check_members(agent_ids)
        reply_order = _check_order(reply_order)
        user_name = (user_name or "User").strip()[:100] or "User"
        conv = ConversationRecord(
            id=uuid.uuid4().hex,
            agent_id=ids[0],
            user_name=user_name,
            reply_order=reply_order,
            **self.chat.access.owner_of_new(principal),  # private to whoever starts it
        )
        opening = [(a, self.agents.get_with_card(a)) for a in ids]
        with self.db.session() as s:
            s.add(conv)
            s.flush()
            for position, agent_id in enumerate(ids):
                s.add(
                    ConversationMemberRecord(
                        conversation_id=conv.id, agent_id=agent_id, position=position
                    )
                )
            for agent_id, (agent, card) in opening:
                options = greetings(card.data, user_name)
                if options:
                    position = take_positions(s, conv.id, 1)
                    s.add(
                        new_message(
                            conv.id,
                            position,
                            "assistant",
                            options,
                            speaker_id=agent_id,
                            name=agent.name,
                        )
                    )
        return self.get_group(conv.id, principal=principal)

    def get_group(self, conversation_id: str, *, principal: Principal) -> ConversationView:
        with self.db.session() as s:
            row = self.chat._row(s, conversation_id, principal)
            return conversation_view(row, with_messages=True)

    def update_group(
        self,
        conversation_id: str,
        agent_ids: Sequence[str] | None = None,
        reply_order: str | None = None,
        *,
        principal: Principal,
    ) -> ConversationView:
        """New members (in speaking order) and/or a new reply order. A one-to-one chat given
        members becomes a group chat; its agent stays in it only if listed."""
        ids = self._check_members(agent_ids) if agent_ids is not None else None
        order = _check_order(reply_order) if reply_order is not None else None
        with self.db.session() as s:
            conv = self.chat._row(s, conversation_id, principal, write=True)
            if ids is not None:
                conv.members.clear()
                s.flush()
                for position, agent_id in enumerate(ids):
                    conv.members.append(
                        ConversationMemberRecord(
                            conversation_id=conv.id, agent_id=agent_id, position=position
                        )
                    )
                conv.agent_id = ids[0]
            if order is not None:
                conv.reply_order = order
            conv.revision = (conv.revision or 0) + 1
        return self.get_group(conversation_id, principal=principal)

    def reply(
        self,
        conversation_id: str,
        agent_id: str | None = None,
        generation: dict[str, Any] | None = None,
        *,
        principal: Principal,
    ) -> ReplyStream:
        """Let ``agent_id`` speak now (a member; by default the next in round robin), streamed
        like a send. In a one-to-one chat the agent replies again."""
        with self.db.session() as s:
            conv = self.chat._row(s, conversation_id, principal, write=True)
            members = [m.agent_id for m in conv.members]
            if members:
                speaker = agent_id or round_robin(s, conv)
                if speaker not in members:
                    raise ValidationError(f"agent {speaker!r} is not a member of this chat")
                group = turn_for(s, conv, speaker)
            else:
                if agent_id not in (None, conv.agent_id):
                    raise ValidationError(f"agent {agent_id!r} is not in this chat")
                speaker, group = conv.agent_id, None
            slot = take_positions(s, conv.id, 1)
            revision = revision_of(s, conv.id)
        with tenant_scope(principal):  # queued in the caller's own lane (fair scheduling)
            reply = self.chat._reply(
                conversation_id, speaker, generation, revision=revision, slot=slot, group=group
            )
        return self.chat._metered(reply, principal, speaker, "chat.reply")

    def _check_members(self, agent_ids: Sequence[str]) -> list[str]:
        ids = list(dict.fromkeys(a for a in agent_ids or [] if a))
        if len(ids) < 2:
            raise ValidationError("a group chat needs at least two different agents")
        if len(ids) > MAX_MEMBERS:
            raise ValidationError(f"a group chat takes at most {MAX_MEMBERS} agents")
        for agent_id in ids:
            self.agents.get_agent(agent_id)  # 404 for an unknown agent
        return ids


def _check_order(reply_order: str) -> str:
    if reply_order not in REPLY_ORDERS:
        raise ValidationError(f"reply_order must be one of {', '.join(REPLY_ORDERS)}")
    return reply_order


@event.listens_for(AgentRecord, "before_delete")
def _hand_over_groups(_mapper: Any, connection: Any, agent: AgentRecord) -> None:
    """Before an agent goes, the group chats it leads pass to their next member, so the
    cascade from ``conversations.agent_id`` only deletes the chats it had alone."""
    members = ConversationMemberRecord.__table__
    led = connection.execute(
        select(ConversationRecord.id).where(ConversationRecord.agent_id == agent.id)
    ).scalars()
    for conversation_id in list(led):
        successor = connection.execute(
            select(members.c.agent_id)
            .where(members.c.conversation_id == conversation_id, members.c.agent_id != agent.id)
            .order_by(members.c.position)
            .limit(1)
        ).scalar()
        if successor is not None:
            connection.execute(
                update(ConversationRecord.__table__)
                .where(ConversationRecord.__table__.c.id == conversation_id)
                .values(agent_id=successor)
            )
