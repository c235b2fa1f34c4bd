"""Chats in and out: SillyTavern chat JSONL, and Anima's own JSON with every version.

SillyTavern keeps a chat as JSON Lines. The first line is a header::

    {"user_name": "You", "character_name": "Aria", "create_date": "2026-12-07@20h03m59s",
     "chat_metadata": {...}}

and every further line one message::

    {"name": "Aria", "is_user": false, "is_system": false, "send_date": "...",
     "mes": "the text shown", "swipes": ["first", "the text shown"], "swipe_id": 1,
     "swipe_info": [...], "extra": {}}

``swipes`` are a message's versions and ``swipe_id`` the one shown, which map one to one onto
Anima's ``versions`` and ``selected``; ``name`` says who spoke, so a group chat keeps its
speakers' names. The author's note travels in ``chat_metadata`` under SillyTavern's own keys
(``note_prompt``, ``note_depth``, ``note_interval``); the rest of Anima's conversation sits
under ``chat_metadata.anima``, which SillyTavern keeps and ignores.

Anima's JSON (``format=json``) is the conversation view as the API shows it (every message
with all its versions, the selected index, pins, speakers and names), under
``{"format": "anima-chat", "version": 1, "conversation": ...}``.

An import is checked whole before anything is stored, then stored in one transaction: a
malformed file is a 422 that names its line, and leaves nothing behind.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.chat import MAX_MESSAGE_CHARS
from agents.conversation_access import ConversationAccess
from agents.conversations import (
    ConversationView,
    conversation_row,
    conversation_view,
    new_message,
)
from agents.group_turns import REPLY_ORDERS
from agents.records import AgentRecord, ConversationMemberRecord, ConversationRecord
from agents.service import AgentService
from core.db import Database
from core.errors import ChatFileError
from core.principal import Principal

ANIMA_FORMAT = "anima-chat"
ST_CREATE_DATE = "%Y-%m-%d@%Hh%Mm%Ss"  # SillyTavern's create_date
MAX_IMPORT_MESSAGES = 50_000


@dataclass
class _Line:
    role: str
    versions: list[str]
    selected: int
    name: str | None
    sent: datetime | None
    pinned: bool = False


class ChatTransferService:
    """Export a conversation; import a SillyTavern chat onto an agent."""

    def __init__(
        self, db: Database, agents: AgentService, access: ConversationAccess | None = None
    ) -> None:
        self.db = db
        self.agents = agents
        self.access = access or ConversationAccess()

    # ----- export --------------------------------------------------------------------
    def export_json(self, conversation_id: str, *, principal: Principal) -> dict[str, Any]:
        """Anima's own format: the whole conversation with every version of every message."""
        view = self._view(conversation_id, principal)
        return {
            "format": ANIMA_FORMAT,
            "version": 1,
            "conversation": view.model_dump(mode="json"),
        }

    def export_jsonl(self, conversation_id: str, *, principal: Principal) -> str:
        """The conversation as a SillyTavern chat file (JSON Lines)."""
        view = self._view(conversation_id, principal)
        names = self._agent_names([view.agent_id, *view.members])
        character = names.get(view.agent_id, "Assistant")
        header = {
            "user_name": view.user_name,
            "character_name": character,
            "create_date": view.created_at.strftime(ST_CREATE_DATE),
            "chat_metadata": {
                "note_prompt": view.authors_note,
                "note_depth": view.authors_note_depth,
                "note_interval": view.authors_note_frequency,
                "anima": {
                    "title": view.title,
                    "reply_order": view.reply_order,
                    "members": [names.get(m, m) for m in view.members],
                },
            },
        }
        lines = [header]
        for m in view.messages:
            is_user = m.role == "user"
            default = view.user_name if is_user else names.get(m.speaker_id or "", character)
            line: dict[str, Any] = {
                "name": m.name or default,
                "is_user": is_user,
                "is_system": m.role == "system",
                "send_date": m.created_at.isoformat(),
                "mes": m.content,
                "extra": {"anima": {"pinned": True}} if m.pinned else {},
            }
            if not is_user or len(m.versions) > 1:
                line["swipes"] = list(m.versions)
                line["swipe_id"] = m.selected
                line["swipe_info"] = [
                    {"send_date": line["send_date"], "extra": {}} for _ in m.versions
                ]
            lines.append(line)
        return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)

    # ----- import --------------------------------------------------------------------
    def import_jsonl(
        self,
        agent_id: str,
        filename: str | None,
        content: bytes,
        members: Sequence[str] = (),
        *,
        principal: Principal,
    ) -> ConversationView:
        """A new conversation with ``agent_id`` holding the SillyTavern chat in ``content``.

        ``members``: more agents, to import a group chat as one (``agent_id`` speaks first);
        each line is its speaker's when the names match. Without them every character's
        line keeps its name, and the agent's own name marks the lines that are its own.
        """
        ids = list(dict.fromkeys([agent_id, *(m for m in members if m)]))
        speakers = {}
        for member in reversed(ids):  # the first of two agents with one name wins
            speakers[self.agents.get_agent(member).name] = member  # 404 before reading
        agent_name = self.agents.get_agent(agent_id).name
        name = filename or "the file"
        header, lines = parse_jsonl(name, content)
        user_name = _user_name(header, lines)
        meta = header.get("chat_metadata") if isinstance(header.get("chat_metadata"), dict) else {}
        anima = meta.get("anima") if isinstance(meta.get("anima"), dict) else {}
        title = str(anima.get("title") or "") or next(
            (x.versions[x.selected][:60] for x in lines if x.role == "user"), ""
        )
        conv = ConversationRecord(
            id=uuid.uuid4().hex,
            agent_id=agent_id,
            user_name=user_name,
            title=title[:200] or f"Imported {name}"[:200],
            next_position=len(lines),
            authors_note=str(meta.get("note_prompt") or ""),
            authors_note_depth=_int(meta.get("note_depth"), 4),
            authors_note_frequency=_int(meta.get("note_interval"), 1),
            **self.access.owner_of_new(principal),  # private to whoever imports it
        )
        if len(ids) > 1:
            order = anima.get("reply_order")
            conv.reply_order = order if order in REPLY_ORDERS else "round_robin"
        with self.db.session() as s:  # one transaction: all of it or nothing
            s.add(conv)
            s.flush()
            if len(ids) > 1:
                for position, member in enumerate(ids):
                    s.add(
                        ConversationMemberRecord(
                            conversation_id=conv.id, agent_id=member, position=position
                        )
                    )
            for position, line in enumerate(lines):
                extra = _message_fields(line, agent_name, user_name, speakers)
                s.add(
                    new_message(conv.id, position, line.role, line.versions, line.selected, **extra)
                )
        return self._view(conv.id, principal)

    # ----- internals -----------------------------------------------------------------
    def _view(self, conversation_id: str, principal: Principal) -> ConversationView:
        """The conversation, if ``principal`` may read it (a 404 as if missing otherwise)."""
        with self.db.session() as s:
            row = conversation_row(s, conversation_id)
            self.access.require(row, principal)
            return conversation_view(row, with_messages=True)

    def _agent_names(self, ids: list[str]) -> dict[str, str]:
        with self.db.session() as s:
            return {i: row.name for i in dict.fromkeys(ids) if (row := s.get(AgentRecord, i))}


def parse_jsonl(name: str, content: bytes) -> tuple[dict[str, Any], list[_Line]]:
    """The header and the messages of a SillyTavern chat; ``ChatFileError`` (422) names the
    line at fault. A file without a header line (messages only) is accepted."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChatFileError(f"{name} is not UTF-8 text (byte {exc.start})") from exc
    header: dict[str, Any] = {}
    lines: list[_Line] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ChatFileError(f"{name} line {number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise ChatFileError(f"{name} line {number}: expected a JSON object")
        if not lines and not header and "mes" not in item:
            header = item
            continue
        lines.append(_message(name, number, item))
        if len(lines) > MAX_IMPORT_MESSAGES:
            raise ChatFileError(f"{name} has more than {MAX_IMPORT_MESSAGES} messages")
    if not lines:
        raise ChatFileError(f"{name} has no messages")
    return header, lines


def _message(name: str, number: int, item: dict[str, Any]) -> _Line:
    where = f"{name} line {number}"
    mes = item.get("mes")
    if not isinstance(mes, str):
        raise ChatFileError(f"{where}: a message needs 'mes' (its text)")
    speaker = item.get("name")
    if speaker is not None and not isinstance(speaker, str):
        raise ChatFileError(f"{where}: 'name' must be text")
    for flag in ("is_user", "is_system"):
        if item.get(flag) is not None and not isinstance(item.get(flag), bool):
            raise ChatFileError(f"{where}: '{flag}' must be true or false")
    swipes = item.get("swipes")
    if swipes is None or swipes == []:
        versions, selected = [mes], 0
    else:
        if not isinstance(swipes, list) or not all(isinstance(v, str) for v in swipes):
            raise ChatFileError(f"{where}: 'swipes' must be a list of texts")
        selected = item.get("swipe_id", 0)
        if isinstance(selected, bool) or not isinstance(selected, int):
            raise ChatFileError(f"{where}: 'swipe_id' must be a whole number")
        if not 0 <= selected < len(swipes):
            raise ChatFileError(f"{where}: 'swipe_id' {selected} is not one of its swipes")
        versions = list(swipes)
        versions[selected] = mes  # the text shown wins (SillyTavern edits 'mes' in place)
    if any(len(v) > MAX_MESSAGE_CHARS for v in versions):
        raise ChatFileError(f"{where}: longer than {MAX_MESSAGE_CHARS} characters")
    role = "user" if item.get("is_user") else "system" if item.get("is_system") else "assistant"
    extra = item.get("extra")
    anima = extra.get("anima") if isinstance(extra, dict) else None
    pinned = isinstance(anima, dict) and anima.get("pinned") is True
    speaker = (speaker or "").strip()[:200] or None
    return _Line(role, versions, selected, speaker, _date(item), pinned)


def _user_name(header: dict[str, Any], lines: list[_Line]) -> str:
    """The file's user name, else the name on its first user line that has one."""
    user_name = str(header.get("user_name") or "").strip()[:100]
    if not user_name:
        user_name = next((x.name for x in lines if x.role == "user" and x.name), "User")
    return user_name


def _message_fields(
    line: _Line, agent_name: str, user_name: str, speakers: dict[str, str]
) -> dict[str, Any]:
    """A line's name, speaker, date and pin, as ``new_message`` takes them."""
    extra: dict[str, Any] = {}
    if line.role == "assistant":
        extra["name"] = line.name or agent_name
        if extra["name"] in speakers:
            extra["speaker_id"] = speakers[extra["name"]]
    elif line.name and line.name != user_name:
        extra["name"] = line.name  # a user line under another persona's name
    if line.sent is not None:
        extra["created_at"] = line.sent
    if line.pinned:
        extra["pinned"] = True
    return extra


def _date(item: dict[str, Any]) -> datetime | None:
    """``send_date`` when it is an ISO date (Anima's and newer SillyTavern files)."""
    raw = item.get("send_date")
    if not isinstance(raw, str):
        return None
    try:
        sent = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return sent if sent.tzinfo else sent.replace(tzinfo=UTC)


def _int(value: Any, default: int) -> int:
    whole = isinstance(value, int) and not isinstance(value, bool)
    return value if whole and value >= 0 else default
