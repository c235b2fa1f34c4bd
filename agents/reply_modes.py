"""How a generated text is stored (a new reply, a new version, a continuation) and the prompt
tails of the two ways to generate that are not a plain reply: continue and impersonate.

Continue ends the prompt with the reply so far as an open assistant turn: the engines apply
the chat template without a generation prompt when the history ends with the assistant
(``continue_final_message``), so the model writes on from the reply's last token instead of
starting a new turn. The continuation is appended to the version that is shown.

Impersonate ends the prompt with an instruction to write the user's next line; the draft
is never stored (the user edits it and sends it as their own message).

Every saver first locks the conversation at the revision the generation started from
(``agents.message_edits.lock_unrevised``): an edit or delete meanwhile refuses the text with a
409 instead of storing a reply after a message that is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agents.conversations import (
    DELETED_MID_REPLY,
    MessageView,
    add_version,
    insert_reply,
    message_view,
)
from agents.group_turns import GroupTurn
from agents.message_edits import EDITED_MID_REPLY, lock_unrevised
from agents.prompt import render_macros
from agents.records import MessageRecord
from agents.schema import ChatMessage
from core.db import Database
from core.errors import ConflictError

IMPERSONATE_INSTRUCTION = (
    "[Write {{user}}'s next message in this chat, from {{user}}'s point of view, in the style "
    "of {{user}}'s earlier messages. Write only what {{user}} says or does: never write as "
    "{{char}}, and do not put a name in front.]"
)

Saver = Callable[[str], MessageView | None]


def last_message(session: Any, conversation_id: str) -> MessageRecord | None:
    return session.scalars(
        select(MessageRecord)
        .where(MessageRecord.conversation_id == conversation_id)
        .order_by(MessageRecord.position.desc())
        .limit(1)
    ).first()


def continued(messages: list[ChatMessage], partial: str) -> list[ChatMessage]:
    """The prompt with the reply so far as its last, open assistant turn."""
    return [*messages, ChatMessage(role="assistant", content=partial)]


def impersonating(messages: list[ChatMessage], char: str, user: str) -> list[ChatMessage]:
    """The prompt asking for the user's next line."""
    instruction = render_macros(IMPERSONATE_INSTRUCTION, char, user)
    return [*messages, ChatMessage(role="system", content=instruction)]


def reply_saver(
    db: Database,
    conversation_id: str,
    revision: int,
    *,
    slot: int | None = None,
    target: str | None = None,
    group: GroupTurn | None = None,
) -> Saver:
    """Store a reply at its reserved ``slot``, or as the newest version of message ``target``;
    in a group chat with its speaker, the speaker's name prefix taken off."""

    def save(text: str) -> MessageView:
        text = group.clean(text) if group else text
        try:
            with db.session() as s:
                lock_unrevised(s, conversation_id, revision)
                if target is None:
                    assert slot is not None
                    extra = group.stored() if group else {}
                    return insert_reply(s, conversation_id, slot, text, **extra)
                row = s.get(MessageRecord, target)
                if row is None:
                    raise ConflictError(EDITED_MID_REPLY)
                add_version(row, text)
                s.flush()
                return message_view(row)
        except IntegrityError as exc:  # the conversation went away between the checks
            raise ConflictError(DELETED_MID_REPLY) from exc

    return save


def continuation_saver(
    db: Database, conversation_id: str, target: str, index: int, revision: int
) -> Saver:
    """Append the text to version ``index`` of message ``target`` (the one continued, even
    if another version was picked meanwhile)."""

    def save(text: str) -> MessageView:
        with db.session() as s:
            lock_unrevised(s, conversation_id, revision)
            row = s.get(MessageRecord, target)
            versions = list(row.versions or [row.content]) if row is not None else []
            if row is None or index >= len(versions):
                raise ConflictError(EDITED_MID_REPLY)
            versions[index] += text
            row.versions = versions
            row.content = versions[min(row.selected or 0, len(versions) - 1)]
            s.flush()
            return message_view(row)

    return save
