"""Conversation storage: rows, positions, and the recent history a reply reads.

Order is the order of sends. Each conversation hands out positions from a counter taken with
one UPDATE (atomic on SQLite and PostgreSQL), and ``(conversation, position)`` is unique. Only
as much history as can fit the context window is loaded and tokenised, however long the
conversation grows. ``agents.chat`` writes replies through these functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update

from agents.prompt import MESSAGE_OVERHEAD_TOKENS
from agents.records import ConversationRecord, MessageRecord, utcnow
from agents.schema import ChatMessage
from core.db import Database, UTCDateTime
from core.errors import ConflictError, NotFoundError
from core.files import is_safe_id

# History is read newest first in pages of this many messages, until it fills the window.
HISTORY_PAGE = 32
DELETED_MID_REPLY = (
    "the conversation was deleted while the reply was being written; the reply was not stored"
)


class MessageView(BaseModel):
    id: str
    position: int
    role: str
    content: str  # the selected version
    versions: list[str]  # every version in order (swipes); ``content`` is ``versions[selected]``
    selected: int
    alternatives: list[str]  # the versions not shown, in order (kept for older clients)
    pinned: bool = False
    speaker_id: str | None = None  # the agent who spoke, in a group chat
    name: str | None = None
    created_at: UTCDateTime


class ConversationView(BaseModel):
    id: str
    agent_id: str
    title: str
    user_name: str
    parent_id: str | None = None  # the conversation this one branched from
    parent_position: int | None = None
    persona_id: str | None = None
    authors_note: str = ""
    authors_note_depth: int = 4
    authors_note_frequency: int = 1
    summary: str = ""
    summary_upto: int = 0
    summary_pinned: bool = False
    reply_order: str = "manual"
    members: list[str] = []  # a group chat's agents in speaking order; empty for 1:1 chats
    created_at: UTCDateTime
    updated_at: UTCDateTime
    messages: list[MessageView] = []
    # Started before conversations had owners: open to everyone until someone claims it.
    shared: bool = False
    owner_address: str | None = None  # the wallet it belongs to (None: a visitor's, or shared)


def recent_history(
    db: Database,
    conversation_id: str,
    before: int | None,
    *,
    budget: int,
    count: Callable[[str], int],
    at_least: int,
) -> tuple[str, list[ChatMessage]]:
    """The user's name and the newest messages before position ``before``, oldest first.

    Read newest first, a page at a time, until they cost more tokens than the whole
    context window (``build_prompt`` trims precisely from there) and the lorebook's scan
    depth is covered: a conversation of ten thousand messages costs what its last few do.
    """
    newest_first: list[MessageRecord] = []
    spent = 0
    with db.session() as s:
        conv = conversation_row(s, conversation_id)
        user_name = conv.user_name
        bound = before
        while spent <= budget or len(newest_first) < at_least:
            query = select(MessageRecord).where(MessageRecord.conversation_id == conv.id)
            if bound is not None:
                query = query.where(MessageRecord.position < bound)
            page = s.scalars(
                query.order_by(MessageRecord.position.desc()).limit(HISTORY_PAGE)
            ).all()
            for row in page:
                newest_first.append(row)
                spent += count(row.content) + MESSAGE_OVERHEAD_TOKENS
                if spent > budget and len(newest_first) >= at_least:
                    break
            if len(page) < HISTORY_PAGE:
                break
            bound = page[-1].position
        history = [
            ChatMessage(role=m.role, content=m.content)  # type: ignore[arg-type]
            for m in reversed(newest_first)
        ]
    return user_name, history


def new_message(
    conversation_id: str,
    position: int,
    role: str,
    versions: list[str],
    selected: int = 0,
    **extra: Any,
) -> MessageRecord:
    """A message row whose ``content`` is its selected version (``extra``: speaker, name...)."""
    selected = min(max(selected, 0), len(versions) - 1)
    return MessageRecord(
        id=uuid.uuid4().hex,
        conversation_id=conversation_id,
        position=position,
        role=role,
        content=versions[selected],
        versions=list(versions),
        selected=selected,
        **extra,
    )


def add_version(row: MessageRecord, text: str) -> None:
    """Append ``text`` as the newest version of ``row`` and show it (regenerate, edit)."""
    row.versions = [*(row.versions or [row.content]), text]
    row.selected = len(row.versions) - 1
    row.content = text


def select_version(row: MessageRecord, index: int) -> None:
    """Show version ``index`` of ``row``; a ``NotFoundError`` if it has no such version."""
    versions = row.versions or [row.content]
    if not 0 <= index < len(versions):
        raise NotFoundError(f"message {row.id!r} has no version {index} (it has {len(versions)})")
    row.selected = index
    row.content = versions[index]


def insert_reply(
    session: Any, conversation_id: str, position: int, text: str, **extra: Any
) -> MessageView:
    row = new_message(conversation_id, position, "assistant", [text], **extra)
    session.add(row)
    session.flush()
    return message_view(row)


def take_positions(session: Any, conversation_id: str, n: int) -> int:
    """Reserve ``n`` consecutive positions; returns the first.

    One UPDATE increments the counter: it takes the row lock on PostgreSQL and the write
    lock on SQLite before reading, so two sends can never get the same positions.
    """
    taken = session.execute(
        update(ConversationRecord)
        .where(ConversationRecord.id == conversation_id)
        .values(next_position=ConversationRecord.next_position + n, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise ConflictError(DELETED_MID_REPLY)
    after = session.scalar(
        select(ConversationRecord.next_position).where(ConversationRecord.id == conversation_id)
    )
    return int(after) - n


def touch(session: Any, conversation_id: str) -> None:
    """Mark the conversation as just changed; a 409 if it no longer exists."""
    touched = session.execute(
        update(ConversationRecord)
        .where(ConversationRecord.id == conversation_id)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if touched.rowcount != 1:
        raise ConflictError(DELETED_MID_REPLY)


def conversation_row(session: Any, conversation_id: str) -> ConversationRecord:
    row = session.get(ConversationRecord, conversation_id) if is_safe_id(conversation_id) else None
    if row is None:
        raise NotFoundError(f"no conversation with id {conversation_id!r}")
    return row


def conversation_view(row: ConversationRecord, *, with_messages: bool) -> ConversationView:
    return ConversationView(
        id=row.id,
        agent_id=row.agent_id,
        title=row.title,
        user_name=row.user_name,
        parent_id=row.parent_id,
        parent_position=row.parent_position,
        persona_id=row.persona_id,
        authors_note=row.authors_note or "",
        authors_note_depth=row.authors_note_depth,
        authors_note_frequency=row.authors_note_frequency,
        summary=row.summary or "",
        summary_upto=row.summary_upto or 0,
        summary_pinned=bool(row.summary_pinned),
        reply_order=row.reply_order or "manual",
        members=[m.agent_id for m in row.members],
        created_at=row.created_at,
        updated_at=row.updated_at,
        messages=[message_view(m) for m in row.messages] if with_messages else [],
        shared=row.owner_address is None and row.visitor_id is None,
        owner_address=row.owner_address,
    )


def message_view(row: MessageRecord) -> MessageView:
    versions = list(row.versions or [row.content])
    selected = min(row.selected or 0, len(versions) - 1)
    return MessageView(
        id=row.id,
        position=row.position,
        role=row.role,
        content=row.content,
        versions=versions,
        selected=selected,
        alternatives=[v for i, v in enumerate(versions) if i != selected],
        pinned=bool(row.pinned),
        speaker_id=row.speaker_id,
        name=row.name,
        created_at=row.created_at,
    )
