"""Changing a stored conversation: pick a version (swipe), edit, delete, branch.

Every change starts with one UPDATE of the conversation row: it takes the row lock on
PostgreSQL and the write lock on SQLite before anything is read, so two changes (or a change
and a reply being stored) never read the same message and overwrite each other's versions.

Edits and deletes also bump the conversation's ``revision``. A reply stores itself only if
the revision it started from is still current (``agents.chat``), so a reply that was streaming
while its history changed ends with a conflict instead of landing after a deleted message.
Picking a version does not bump it: swiping through the last reply while another version
is being written keeps that version.

Positions are never handed out twice: deleting leaves a gap (order is by position, gaps are
harmless), and ``next_position`` stays above every position ever taken, so a slot reserved by
a reply still streaming can never be reused by a later message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update

from agents.conversations import (
    DELETED_MID_REPLY,
    ConversationView,
    MessageView,
    add_version,
    conversation_view,
    message_view,
    new_message,
    select_version,
)
from agents.records import (
    ConversationMemberRecord,
    ConversationRecord,
    MessageRecord,
    utcnow,
)
from core.db import Database
from core.errors import ConflictError, NotFoundError

# Loads the conversation's row in a session once the caller may use it (``ChatService._row``).
Loader = Callable[[Any], ConversationRecord]

EDITED_MID_REPLY = (
    "the conversation was edited while the reply was being written; the reply was not stored"
)


def lock_conversation(session: Any, conversation_id: str, *, revise: bool) -> None:
    """Take the conversation's write lock (and bump its revision when ``revise``)."""
    values: dict[str, Any] = {"updated_at": utcnow()}
    if revise:
        values["revision"] = ConversationRecord.revision + 1
    locked = session.execute(
        update(ConversationRecord)
        .where(ConversationRecord.id == conversation_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount != 1:
        raise NotFoundError(f"no conversation with id {conversation_id!r}")


def revision_of(session: Any, conversation_id: str) -> int:
    """The conversation's revision as this session sees it now."""
    current = session.scalar(
        select(ConversationRecord.revision).where(ConversationRecord.id == conversation_id)
    )
    if current is None:
        raise ConflictError(DELETED_MID_REPLY)
    return int(current)


def lock_unrevised(session: Any, conversation_id: str, revision: int) -> None:
    """Lock the conversation for storing a reply that started at ``revision``; a 409 if the
    conversation was deleted or edited since."""
    locked = session.execute(
        update(ConversationRecord)
        .where(ConversationRecord.id == conversation_id)
        .where(ConversationRecord.revision == revision)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount == 1:
        return
    exists = session.scalar(
        select(ConversationRecord.id).where(ConversationRecord.id == conversation_id)
    )
    raise ConflictError(EDITED_MID_REPLY if exists else DELETED_MID_REPLY)


def message_row(session: Any, conversation_id: str, message_id: str) -> MessageRecord:
    row = session.get(MessageRecord, message_id) if isinstance(message_id, str) else None
    if row is None or row.conversation_id != conversation_id:
        raise NotFoundError(f"no message {message_id!r} in conversation {conversation_id!r}")
    return row


def pick_version(db: Database, load: Loader, message_id: str, index: int) -> MessageView:
    """Show version ``index`` of a message; it is what the next reply reads as history."""
    with db.session() as s:
        conv = load(s)
        lock_conversation(s, conv.id, revise=False)
        row = message_row(s, conv.id, message_id)
        select_version(row, index)
        s.flush()
        return message_view(row)


def edit_message(db: Database, load: Loader, message_id: str, text: str) -> MessageView:
    """``text`` becomes the message's newest version, shown; the earlier ones stay."""
    with db.session() as s:
        conv = load(s)
        lock_conversation(s, conv.id, revise=True)
        row = message_row(s, conv.id, message_id)
        add_version(row, text)
        s.flush()
        return message_view(row)


def delete_messages(db: Database, load: Loader, message_id: str, *, and_after: bool) -> int:
    """Delete a message (and, with ``and_after``, every later one); how many went."""
    with db.session() as s:
        conv = load(s)
        lock_conversation(s, conv.id, revise=True)
        row = message_row(s, conv.id, message_id)
        query = delete(MessageRecord).where(MessageRecord.conversation_id == conv.id)
        if and_after:
            query = query.where(MessageRecord.position >= row.position)
        else:
            query = query.where(MessageRecord.id == row.id)
        gone = s.execute(query.execution_options(synchronize_session=False)).rowcount
        s.expire_all()
        return int(gone)


def branch_conversation(
    db: Database, load: Loader, message_id: str, owner: dict[str, Any]
) -> ConversationView:
    """A new conversation holding copies of the messages up to and including ``message_id``
    (every version, the shown one, pins), remembering where it came from. ``owner``: the
    owner columns of the new one (it belongs to whoever branches)."""
    with db.session() as s:
        parent = load(s)
        cut = message_row(s, parent.id, message_id).position
        branch = ConversationRecord(
            id=uuid.uuid4().hex,
            agent_id=parent.agent_id,
            title=parent.title,
            user_name=parent.user_name,
            next_position=cut + 1,
            parent_id=parent.id,
            parent_position=cut,
            **_settings_of(parent, cut),
            **owner,
        )
        s.add(branch)
        s.flush()
        for member in parent.members:
            s.add(ConversationMemberRecord(conversation_id=branch.id, **_member(member)))
        for m in parent.messages:
            if m.position <= cut:
                s.add(_copy(m, branch.id))
        s.flush()
        s.refresh(branch)
        return conversation_view(branch, with_messages=True)


def _settings_of(parent: ConversationRecord, cut: int) -> dict[str, Any]:
    """The per-chat settings a branch keeps; the summary only if it covers no message the
    branch leaves out."""
    keeps_summary = (parent.summary_upto or 0) <= cut + 1
    return {
        "persona_id": parent.persona_id,
        "authors_note": parent.authors_note,
        "authors_note_depth": parent.authors_note_depth,
        "authors_note_frequency": parent.authors_note_frequency,
        "summary": parent.summary if keeps_summary else "",
        "summary_upto": parent.summary_upto if keeps_summary else 0,
        "summary_pinned": parent.summary_pinned if keeps_summary else False,
        "reply_order": parent.reply_order,
    }


def _member(member: ConversationMemberRecord) -> dict[str, Any]:
    return {"agent_id": member.agent_id, "position": member.position}


def _copy(m: MessageRecord, conversation_id: str) -> MessageRecord:
    row = new_message(
        conversation_id,
        m.position,
        m.role,
        list(m.versions or [m.content]),
        m.selected or 0,
        pinned=m.pinned,
        speaker_id=m.speaker_id,
        name=m.name,
    )
    row.created_at = m.created_at
    return row
