"""Editing lorebooks: an agent's own (the card's ``character_book``) and standalone books.

The card's book is edited in place, entry by entry, through ``AgentService.update_agent``, so
every edit is one transaction that also bumps the card's version and runs the RE2 check on
pattern keys (``agents.lorebook.check_regex_keys``). Edits change only the fields they name,
and a field set to the value it already has is left as stored: an entry imported from
SillyTavern keeps every key it came with (``extensions`` included) until one is really changed.

Entries are addressed by their position in the book (what a table row shows); a lock keeps
two edits of one process from interleaving their read and write.

A standalone book is a SillyTavern world-info file (``agents.world_info``) kept in the
``lorebooks`` table in the card's book shape; ``agent_lorebooks`` attaches one to any number of
agents, and replies read attached books' entries beside the card's own
(``books_for``, through the ``agents.lorebook.LoreSource`` seam).
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import DateTime, ForeignKey, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from agents import world_info
from agents.lorebook import AND_ANY, check_regex_keys
from agents.records import AgentRecord, utcnow
from agents.schema import CharacterBook, LorebookEntry
from agents.service import AgentService
from core.db import Base, Database, UTCDateTime
from core.errors import CardFormatError, NotFoundError, UploadTooLargeError, ValidationError
from core.files import is_safe_id
from core.principal import Principal

MAX_ENTRIES = 5000  # per book: far past any real book, small enough to edit in a browser
MAX_KEY_CHARS = 500
MAX_CONTENT_CHARS = 50_000
CONTENT_PREVIEW_CHARS = 80
LOGIC_NAMES = {0: "AND ANY", 1: "NOT ALL", 2: "NOT ANY", 3: "AND ALL"}


class LorebookRecord(Base):
    """A standalone book. ``data`` is the book in the card's ``character_book`` shape."""

    __tablename__ = "lorebooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_address: Mapped[str | None] = mapped_column(String(42), nullable=True, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    entry_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AgentLorebookRecord(Base):
    """An agent's attached book; both sides cascade, so deleting either detaches."""

    __tablename__ = "agent_lorebooks"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    lorebook_id: Mapped[str] = mapped_column(
        ForeignKey("lorebooks.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# ----- views and edits ---------------------------------------------------------------------
class EntryView(BaseModel):
    """One entry as the editor shows it. ``index``: its position in the book."""

    index: int
    enabled: bool
    keys: list[str]
    secondary_keys: list[str]
    comment: str
    content: str
    constant: bool
    selective: bool
    selective_logic: int = Field(description="0 AND ANY, 1 NOT ALL, 2 NOT ANY, 3 AND ALL")
    position: Literal["before_char", "after_char"]
    depth: int | None
    order: int = Field(description="insertion_order: lower is inserted earlier")
    probability: int | None
    use_regex: bool


class EntryPatch(BaseModel):
    """The fields to change; the ones left out stay as stored."""

    enabled: bool | None = None
    keys: list[str] | None = None
    secondary_keys: list[str] | None = None
    comment: str | None = Field(default=None, max_length=MAX_KEY_CHARS)
    content: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)
    constant: bool | None = None
    selective: bool | None = None
    selective_logic: int | None = Field(default=None, ge=0, le=3)
    position: Literal["before_char", "after_char"] | None = None
    depth: int | None = Field(default=None, ge=0, le=10_000)
    order: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    probability: int | None = Field(default=None, ge=0, le=100)
    use_regex: bool | None = None

    @field_validator("keys", "secondary_keys")
    @classmethod
    def _clean_keys(cls, keys: list[str] | None) -> list[str] | None:
        if keys is None:
            return None
        cleaned = [k.strip() for k in keys if k.strip()]
        for key in cleaned:
            if len(key) > MAX_KEY_CHARS:
                raise ValueError(f"a key is at most {MAX_KEY_CHARS} characters")
        return cleaned


class BookView(BaseModel):
    id: str
    name: str
    entries: int
    owner_address: str | None
    agent_ids: list[str] = Field(description="The agents it is attached to that you may see.")
    created_at: UTCDateTime
    updated_at: UTCDateTime


def entry_view(index: int, entry: LorebookEntry) -> EntryView:
    ext = entry.extensions
    position = entry.position
    if position not in ("before_char", "after_char"):
        position = "after_char" if ext.get("position") == 1 else "before_char"
    logic = ext.get("selectiveLogic")
    return EntryView(
        index=index,
        enabled=bool(entry.enabled),
        keys=list(entry.keys or []),
        secondary_keys=list(entry.secondary_keys or []),
        comment=entry.comment or entry.name or "",
        content=entry.content or "",
        constant=bool(entry.constant),
        selective=bool(entry.selective),
        selective_logic=logic if isinstance(logic, int) and logic in LOGIC_NAMES else AND_ANY,
        position=position,
        depth=_int_or_none(ext.get("depth")),
        order=entry.insertion_order,
        probability=_int_or_none(ext.get("probability")),
        use_regex=bool(entry.use_regex),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def apply_patch(entry: LorebookEntry, patch: EntryPatch) -> LorebookEntry:
    """``entry`` with the patch's fields that differ from what it shows now."""
    now = entry_view(0, entry)
    data = entry.dump()
    ext = dict(data.get("extensions") or {})
    changes = {
        k: v
        for k, v in patch.model_dump(exclude_unset=True).items()
        if v is not None and v != getattr(now, k)
    }
    top = {
        "enabled": "enabled",
        "keys": "keys",
        "secondary_keys": "secondary_keys",
        "content": "content",
        "constant": "constant",
        "selective": "selective",
        "order": "insertion_order",
        "use_regex": "use_regex",
    }
    for name, value in changes.items():
        if name in top:
            data[top[name]] = value
        elif name == "comment":
            data["comment"] = value
        elif name == "selective_logic":
            ext["selectiveLogic"] = value
        elif name == "position":
            data["position"] = value
            ext["position"] = 1 if value == "after_char" else 0  # ST reads this one first
        elif name == "depth":
            ext["depth"] = value
        elif name == "probability":
            ext["probability"] = value
            ext["useProbability"] = value < 100 or bool(ext.get("useProbability"))
    if changes.get("secondary_keys") and "selective" not in changes:
        data["selective"] = True  # secondary keys only count on a selective entry
    data["extensions"] = ext
    return LorebookEntry.model_validate(data)


def new_entry(entry_id: int) -> LorebookEntry:
    """A fresh entry with the fields the V2 spec requires."""
    return LorebookEntry.model_validate(
        {
            "id": entry_id,
            "keys": [],
            "secondary_keys": [],
            "comment": "",
            "content": "",
            "constant": False,
            "selective": True,
            "enabled": True,
            "insertion_order": 100,
            "position": "before_char",
            "use_regex": False,
            "extensions": {},
        }
    )


def _next_id(book: CharacterBook) -> int:
    ids = [e.id for e in book.entries if isinstance(e.id, int) and not isinstance(e.id, bool)]
    return max(ids, default=-1) + 1


def matches(view: EntryView, query: str) -> bool:
    """Whether the entry's keys, comment or content contain ``query`` (case-insensitive)."""
    needle = query.strip().lower()
    hay = [*view.keys, *view.secondary_keys, view.comment, view.content]
    return not needle or any(needle in text.lower() for text in hay)


class LorebookService:
    """Every method takes the caller; the agent's owner edits its book, a book's owner edits
    the book (``owner_check`` is the agent service's, wired in ``container.py``)."""

    def __init__(self, db: Database, agents: AgentService) -> None:
        self.db = db
        self.agents = agents
        self._lock = threading.Lock()

    # ----- the card's book -------------------------------------------------------------
    def entries(self, agent_id: str, *, principal: Principal, query: str = "") -> list[EntryView]:
        """The entries of the agent's book, all or those whose keys, comment or content
        contain ``query`` (case-insensitive)."""
        self.agents.require_visible(agent_id, principal=principal)
        book = self._book(agent_id)
        views = [entry_view(i, e) for i, e in enumerate(book.entries)]
        return [v for v in views if matches(v, query)]

    def entry(self, agent_id: str, index: int, *, principal: Principal) -> EntryView:
        self.agents.require_visible(agent_id, principal=principal)
        book = self._book(agent_id)
        return entry_view(index, _at(book, index))

    def add(
        self, agent_id: str, patch: EntryPatch | None = None, *, principal: Principal
    ) -> EntryView:
        """A new entry at the end of the book (the book is created with it if needed)."""

        def change(book: CharacterBook) -> int:
            if len(book.entries) >= MAX_ENTRIES:
                raise ValidationError(f"a lorebook holds at most {MAX_ENTRIES} entries")
            book.entries.append(apply_patch(new_entry(_next_id(book)), patch or EntryPatch()))
            return len(book.entries) - 1

        return self._edit_one(agent_id, change, principal)

    def update(
        self, agent_id: str, index: int, patch: EntryPatch, *, principal: Principal
    ) -> EntryView:
        def change(book: CharacterBook) -> int:
            book.entries[index] = apply_patch(_at(book, index), patch)
            return index

        return self._edit_one(agent_id, change, principal)

    def duplicate(self, agent_id: str, index: int, *, principal: Principal) -> EntryView:
        """A copy right after the entry, with a new id (and no world-info slot of its own)."""

        def change(book: CharacterBook) -> int:
            if len(book.entries) >= MAX_ENTRIES:
                raise ValidationError(f"a lorebook holds at most {MAX_ENTRIES} entries")
            data = copy.deepcopy(_at(book, index).dump())
            data["id"] = _next_id(book)
            data["comment"] = f"{data.get('comment') or data.get('name') or 'entry'} (copy)"
            ext = data.get("extensions") or {}
            ext.pop(world_info.SLOT, None)
            if isinstance(ext.get(world_info.BLOB), dict):
                ext[world_info.BLOB].pop("uid", None)
            book.entries.insert(index + 1, LorebookEntry.model_validate(data))
            return index + 1

        return self._edit_one(agent_id, change, principal)

    def delete(self, agent_id: str, indexes: list[int], *, principal: Principal) -> int:
        """Delete the entries at ``indexes``; returns how many are left."""

        def change(book: CharacterBook) -> int:
            for index in sorted(set(indexes), reverse=True):
                _at(book, index)
                del book.entries[index]
            return -1

        book, _ = self._edit(agent_id, change, principal)
        return len(book.entries)

    def set_enabled(
        self, agent_id: str, indexes: list[int], enabled: bool, *, principal: Principal
    ) -> list[EntryView]:
        """Enable or disable many entries in one write."""

        def change(book: CharacterBook) -> int:
            for index in set(indexes):
                book.entries[index] = apply_patch(_at(book, index), EntryPatch(enabled=enabled))
            return -1

        book, _ = self._edit(agent_id, change, principal)
        return [entry_view(i, book.entries[i]) for i in sorted(set(indexes))]

    def export_world_info(self, agent_id: str, *, principal: Principal) -> dict[str, Any]:
        """The card's own book as a SillyTavern world-info file."""
        self.agents.require_visible(agent_id, principal=principal)
        return world_info.book_to_world_info(self._book(agent_id))

    def _book(self, agent_id: str) -> CharacterBook:
        book = self.agents.get_card(agent_id).data.character_book
        return book if book is not None else CharacterBook()

    def _edit(
        self, agent_id: str, change: Callable[[CharacterBook], int], principal: Principal
    ) -> tuple[CharacterBook, int]:
        """Apply ``change`` to a copy of the book and store it; (the book, the index
        ``change`` returned: the entry it made or changed)."""
        self.agents.owner_check.require_owner(principal, agent_id)
        with self._lock:
            book = self._book(agent_id).model_copy(deep=True)
            index = change(book)
            self.agents.update_agent(agent_id, {"character_book": _dump(book)}, principal=principal)
        return book, index

    def _edit_one(
        self, agent_id: str, change: Callable[[CharacterBook], int], principal: Principal
    ) -> EntryView:
        book, index = self._edit(agent_id, change, principal)
        return entry_view(index, book.entries[index])

    # ----- standalone books --------------------------------------------------------------
    def import_world_info(
        self,
        content: bytes,
        filename: str | None = None,
        *,
        principal: Principal,
        attach_to: str | None = None,
    ) -> BookView:
        """Store a SillyTavern world-info JSON file as a book owned by the caller (and attach it
        to ``attach_to``, an agent the caller owns)."""
        self.agents.owner_check.require_creator(principal)
        if attach_to is not None:
            self.agents.owner_check.require_owner(principal, attach_to)
        self.agents.check_upload_size(content)
        if filename and not filename.lower().endswith(".json"):
            raise CardFormatError("a world-info book is a .json file")
        try:
            raw = json.loads(content.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CardFormatError(f"the file is not JSON: {exc}") from exc
        stem = (filename or "world info").rsplit("/", 1)[-1].removesuffix(".json")
        book = world_info.book_from_world_info(raw, stem)
        if len(book.entries) > MAX_ENTRIES:
            raise UploadTooLargeError(f"a lorebook holds at most {MAX_ENTRIES} entries")
        check_regex_keys(book)
        with self.db.session() as s:
            row = LorebookRecord(
                id=uuid.uuid4().hex,
                name=(book.name or stem or "world info")[:200],
                owner_address=principal.address,
                data=_dump(book),
                entry_count=len(book.entries),
            )
            s.add(row)
            if attach_to is not None:
                s.flush()
                s.add(AgentLorebookRecord(agent_id=attach_to, lorebook_id=row.id))
            s.flush()
            return self._book_view(s, row, principal)

    def books(self, *, principal: Principal) -> list[BookView]:
        """The caller's books (an anonymous caller's: the unowned ones), by name."""
        owner = LorebookRecord.owner_address
        mine = owner == principal.address if principal.address else owner.is_(None)
        with self.db.session() as s:
            rows = s.scalars(select(LorebookRecord).where(mine).order_by(LorebookRecord.name))
            return [self._book_view(s, r, principal) for r in rows.all()]

    def attached(self, agent_id: str, *, principal: Principal) -> list[BookView]:
        self.agents.require_visible(agent_id, principal=principal)
        with self.db.session() as s:
            rows = s.scalars(
                select(LorebookRecord)
                .join(AgentLorebookRecord, AgentLorebookRecord.lorebook_id == LorebookRecord.id)
                .where(AgentLorebookRecord.agent_id == agent_id)
                .order_by(LorebookRecord.name)
            ).all()
            return [self._book_view(s, r, principal) for r in rows]

    def export_book(self, book_id: str, *, principal: Principal) -> tuple[str, dict[str, Any]]:
        """(name, world-info file) of a book of the caller's."""
        with self.db.session() as s:
            row = self._own_book(s, book_id, principal)
            return row.name, world_info.book_to_world_info(CharacterBook.model_validate(row.data))

    def attach(self, agent_id: str, book_id: str, *, principal: Principal) -> BookView:
        self.agents.owner_check.require_owner(principal, agent_id)
        with self.db.session() as s:
            if s.get(AgentRecord, agent_id) is None:
                raise NotFoundError(f"no agent with id {agent_id!r}")
            row = self._own_book(s, book_id, principal)
            if s.get(AgentLorebookRecord, (agent_id, book_id)) is None:
                s.add(AgentLorebookRecord(agent_id=agent_id, lorebook_id=book_id))
                s.flush()
            return self._book_view(s, row, principal)

    def detach(self, agent_id: str, book_id: str, *, principal: Principal) -> None:
        self.agents.owner_check.require_owner(principal, agent_id)
        with self.db.session() as s:
            link = s.get(AgentLorebookRecord, (agent_id, book_id)) if is_safe_id(book_id) else None
            if link is None:
                raise NotFoundError(f"lorebook {book_id!r} is not attached to this agent")
            s.delete(link)

    def delete_book(self, book_id: str, *, principal: Principal) -> None:
        with self.db.session() as s:
            row = self._own_book(s, book_id, principal)
            s.execute(delete(AgentLorebookRecord).where(AgentLorebookRecord.lorebook_id == row.id))
            s.delete(row)

    def books_for(self, agent_id: str) -> list[CharacterBook]:
        """The books attached to an agent, for its replies (the app's own read)."""
        with self.db.session() as s:
            rows = s.scalars(
                select(LorebookRecord.data)
                .join(AgentLorebookRecord, AgentLorebookRecord.lorebook_id == LorebookRecord.id)
                .where(AgentLorebookRecord.agent_id == agent_id)
                .order_by(LorebookRecord.name, LorebookRecord.id)
            ).all()
        return [CharacterBook.model_validate(data) for data in rows]

    def _own_book(self, session: Any, book_id: str, principal: Principal) -> LorebookRecord:
        row = session.get(LorebookRecord, book_id) if is_safe_id(book_id) else None
        if row is None or not (principal.is_system or _owns(principal, row.owner_address)):
            raise NotFoundError(f"no lorebook with id {book_id!r}")
        self.agents.owner_check.require_address(principal, row.owner_address, "lorebook")
        return row

    def _book_view(self, session: Any, row: LorebookRecord, principal: Principal) -> BookView:
        agent_ids = session.scalars(
            select(AgentLorebookRecord.agent_id).where(AgentLorebookRecord.lorebook_id == row.id)
        ).all()
        return BookView(
            id=row.id,
            name=row.name,
            entries=row.entry_count,
            owner_address=row.owner_address,
            agent_ids=sorted(agent_ids),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def _owns(principal: Principal, owner: str | None) -> bool:
    return principal.is_address(owner) if owner is not None else principal.address is None


def _at(book: CharacterBook, index: int) -> LorebookEntry:
    if not 0 <= index < len(book.entries):
        raise NotFoundError(f"the lorebook has no entry {index} (it has {len(book.entries)})")
    return book.entries[index]


def _dump(book: CharacterBook) -> dict[str, Any]:
    data = book.dump()
    data["entries"] = [e.dump() for e in book.entries]
    return data
