"""One turn of a group chat: who speaks, and how the chat looks from the speaker's seat.

A group reply is the ordinary one-to-one reply run for the speaking agent, with its own card,
lorebook, knowledge, generation settings and adapter. Only the history differs, as in
SillyTavern's group prompt: the speaker's own lines are its assistant turns, the user's lines
are user turns, and every other agent's line is a user turn that says who spoke
(``Name: text``), so the model answers the others without taking their voice. Generation stops
where the model starts a line for any member or for the user.

Pure functions of rows (no services): ``agents.chat`` imports this module, and
``agents.group_chat`` (the service) builds on both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from agents.records import AgentRecord, ConversationRecord, MessageRecord
from agents.schema import ChatMessage

REPLY_ORDERS = ("manual", "round_robin", "mention")


@dataclass(frozen=True)
class GroupTurn:
    """The speaking agent and the names of every member (the speaker's included)."""

    speaker_id: str
    name: str
    member_names: tuple[str, ...]

    def render(self, row: MessageRecord) -> ChatMessage:
        """``row`` as the speaker sees it in its prompt."""
        if row.role != "assistant" or self.is_own(row):
            return ChatMessage(role=row.role, content=row.content)  # type: ignore[arg-type]
        return ChatMessage(role="user", content=f"{row.name or 'Someone'}: {row.content}")

    def is_own(self, row: MessageRecord) -> bool:
        if row.speaker_id is not None:
            return row.speaker_id == self.speaker_id
        return row.name is None or row.name == self.name

    def stops(self) -> list[str]:
        return [f"\n{name}:" for name in self.member_names if name]

    def stored(self) -> dict[str, Any]:
        """The columns a reply of this turn is stored with."""
        return {"speaker_id": self.speaker_id, "name": self.name}

    def clean(self, text: str) -> str:
        """The reply without a leading ``Name:`` the model may have written for itself."""
        prefix = f"{self.name}:"
        return text[len(prefix) :].lstrip() if text.startswith(prefix) else text


def member_ids(conv: ConversationRecord) -> list[str]:
    return [m.agent_id for m in conv.members]


def member_names(session: Any, ids: Sequence[str]) -> dict[str, str]:
    """Agent id -> name, for the agents that still exist, in the order given."""
    rows = session.scalars(select(AgentRecord).where(AgentRecord.id.in_(list(ids)))).all()
    names = {r.id: r.name for r in rows}
    return {i: names[i] for i in ids if i in names}


def turn_for(session: Any, conv: ConversationRecord, speaker_id: str) -> GroupTurn:
    names = member_names(session, member_ids(conv) or [conv.agent_id])
    return GroupTurn(speaker_id, names.get(speaker_id, ""), tuple(names.values()))


def last_speaker(session: Any, conversation_id: str) -> str | None:
    return session.scalar(
        select(MessageRecord.speaker_id)
        .where(
            MessageRecord.conversation_id == conversation_id,
            MessageRecord.role == "assistant",
            MessageRecord.speaker_id.is_not(None),
        )
        .order_by(MessageRecord.position.desc())
        .limit(1)
    )


def round_robin(session: Any, conv: ConversationRecord) -> str:
    """The member after the last one who spoke (the first when nobody has yet)."""
    ids = member_ids(conv)
    last = last_speaker(session, conv.id)
    if last not in ids:
        return ids[0]
    return ids[(ids.index(last) + 1) % len(ids)]


def mentioned(names: dict[str, str], text: str) -> str | None:
    """The member named first in ``text`` (whole words, any case), or None."""
    found: list[tuple[int, str]] = []
    for agent_id, name in names.items():
        match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)
        if name and match:
            found.append((match.start(), agent_id))
    return min(found)[1] if found else None


def next_speaker(session: Any, conv: ConversationRecord, user_text: str) -> str | None:
    """Who answers the user's message under the chat's reply order; None: nobody yet."""
    if not conv.members or conv.reply_order == "manual":
        return None
    if conv.reply_order == "mention":
        named = mentioned(member_names(session, member_ids(conv)), user_text)
        if named is not None:
            return named
    return round_robin(session, conv)
