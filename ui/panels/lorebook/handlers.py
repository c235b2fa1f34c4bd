"""The lorebook panel's handlers: the entries table, the entry editor, bulk enable/disable,
world-info import/export and attached books.

Each handler is one ``LorebookService`` call (the same the REST API makes) and returns named
updates. On an error the editor's fields are not in the result, so nothing typed is lost; the
message (the RE2 one for a pattern key RE2 cannot run) goes to the status line under the
editor. Rendering is pure (``entry_rows``, ``split_keys``) and tested without a browser.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import gradio as gr

from agents.lorebooks import (
    CONTENT_PREVIEW_CHARS,
    LOGIC_NAMES,
    BookView,
    EntryPatch,
    EntryView,
    matches,
)
from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from ui.agents.form import export_path
from ui.common import show_error
from ui.wiring import Updates

# Header and width per column: fixed widths, so a phone scrolls the table sideways instead of
# squeezing each header into a letter per line.
COLUMNS = [
    ("#", 44),
    ("On", 44),
    ("Keys", 150),
    ("Secondary", 110),
    ("Comment", 130),
    ("Content", 220),
    ("Const.", 70),
    ("Logic", 84),
    ("Pos.", 70),
    ("Depth", 64),
    ("Order", 64),
    ("Prob.", 60),
    ("Regex", 64),
]
HEADERS = [name for name, _ in COLUMNS]
LOGIC_CHOICES = [(name, number) for number, name in LOGIC_NAMES.items()]
POSITION_CHOICES = [("Before the character", "before_char"), ("After the character", "after_char")]
EDITOR = (
    "index",
    "enabled",
    "keys",
    "secondary_keys",
    "comment",
    "content",
    "constant",
    "use_regex",
    "selective_logic",
    "position",
    "depth",
    "order",
    "probability",
)
_REGEX = "/"


def _yes(flag: bool) -> str:
    return "✓" if flag else ""


def entry_rows(entries: Sequence[EntryView]) -> list[list[Any]]:
    rows = []
    for e in entries:
        preview = " ".join(e.content.split())
        if len(preview) > CONTENT_PREVIEW_CHARS:
            preview = preview[: CONTENT_PREVIEW_CHARS - 1] + "…"
        rows.append(
            [
                e.index,
                _yes(e.enabled),
                ", ".join(e.keys),
                ", ".join(e.secondary_keys),
                e.comment,
                preview,
                _yes(e.constant),
                LOGIC_NAMES[e.selective_logic] if e.secondary_keys else "",
                "after" if e.position == "after_char" else "before",
                "" if e.depth is None else e.depth,
                e.order,
                "" if e.probability is None else e.probability,
                _yes(e.use_regex or any(k.startswith(_REGEX) for k in e.keys)),
            ]
        )
    return rows


def join_keys(keys: Sequence[str]) -> str:
    return ", ".join(keys)


def split_keys(text: str | None) -> list[str]:
    """Comma-separated keys; a ``/pattern/flags`` key stays whole even with commas inside."""
    keys: list[str] = []
    pending = ""
    for part in (text or "").split(","):
        piece = f"{pending},{part}" if pending else part
        stripped = piece.strip()
        if stripped.startswith(_REGEX) and not _closed(stripped):
            pending = piece
            continue
        pending = ""
        if stripped:
            keys.append(stripped)
    if pending.strip():
        keys.append(pending.strip())
    return keys


def _closed(key: str) -> bool:
    body = key.rstrip("gimsuy")
    return len(body) > 1 and body.endswith(_REGEX)


def _bulk_choices(entries: Sequence[EntryView]) -> list[tuple[str, int]]:
    def label(e: EntryView) -> str:
        name = e.comment or join_keys(e.keys) or e.content[:30] or "(empty)"
        return f"#{e.index} {name[:40]}"

    return [(label(e), e.index) for e in entries]


def _table(services: Services, agent_id: str, query: str | None, principal: Principal) -> Updates:
    everything = services.lorebooks.entries(agent_id, principal=principal)
    shown = [e for e in everything if matches(e, query or "")]
    return {
        "table": entry_rows(shown),
        "bulk": gr.update(choices=_bulk_choices(everything), value=[]),
        "count": _count_line(len(everything), len(shown), query),
    }


def _count_line(total: int, shown: int, query: str | None) -> str:
    if total == 0:
        return "No entries yet: **Add entry** makes one, or import a world-info book below."
    if (query or "").strip():
        return f"{shown} of {total} entries match."
    return f"{total} entries. Click a row to edit it."


def _editor(entry: EntryView | None) -> Updates:
    if entry is None:
        return {
            "index": None,
            "enabled": True,
            "keys": "",
            "secondary_keys": "",
            "comment": "",
            "content": "",
            "constant": False,
            "use_regex": False,
            "selective_logic": 0,
            "position": "before_char",
            "depth": None,
            "order": 100,
            "probability": 100,
        }
    return {
        "index": entry.index,
        "enabled": entry.enabled,
        "keys": join_keys(entry.keys),
        "secondary_keys": join_keys(entry.secondary_keys),
        "comment": entry.comment,
        "content": entry.content,
        "constant": entry.constant,
        "use_regex": entry.use_regex,
        "selective_logic": entry.selective_logic,
        "position": entry.position,
        "depth": entry.depth,
        "order": entry.order,
        "probability": 100 if entry.probability is None else entry.probability,
    }


def _books(services: Services, agent_id: str, principal: Principal) -> Updates:
    mine = services.lorebooks.books(principal=principal)
    attached = services.lorebooks.attached(agent_id, principal=principal)
    return {
        "book": gr.update(choices=[(_book_label(b), b.id) for b in mine], value=None),
        "attached": gr.update(choices=[(_book_label(b), b.id) for b in attached], value=None),
        "attached_note": _attached_line(attached),
    }


def _book_label(book: BookView) -> str:
    return f"{book.name} ({book.entries} entries)"


def _attached_line(books: Sequence[BookView]) -> str:
    if not books:
        return "No world-info book attached: replies use this card's own entries only."
    names = ", ".join(f"**{b.name}**" for b in books)
    return f"Replies also read: {names}."


def load(
    services: Services, agent_id: str | None, query: str | None, *, principal: Principal
) -> Updates:
    """Everything the panel shows for the picked agent (an empty panel for a new one)."""
    if not agent_id:
        return {
            "table": [],
            "bulk": gr.update(choices=[], value=[]),
            "count": "Save the agent first; then its lorebook can be edited here.",
            "status": "",
            **_editor(None),
            "book": gr.update(choices=[], value=None),
            "attached": gr.update(choices=[], value=None),
            "attached_note": "",
        }
    try:
        return {
            **_table(services, agent_id, query, principal),
            **_editor(None),
            **_books(services, agent_id, principal),
            "status": "",
        }
    except AnimaError as exc:
        return {"status": show_error(exc)}


def search(
    services: Services, agent_id: str | None, query: str | None, *, principal: Principal
) -> Updates:
    if not agent_id:
        return {}
    try:
        return _table(services, agent_id, query, principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}


def open_entry(
    services: Services, agent_id: str | None, index: float | None, *, principal: Principal
) -> Updates:
    if not agent_id or index is None:
        return {}
    try:
        entry = services.lorebooks.entry(agent_id, int(index), principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {**_editor(entry), "status": f"Editing entry #{entry.index}."}


def _need_agent(agent_id: str | None) -> str:
    if not agent_id:
        raise ValidationError("save the agent first; then add lorebook entries to it")
    return agent_id


def _need_entry(index: float | None) -> int:
    if index is None:
        raise ValidationError("pick an entry in the table first")
    return int(index)


def add_entry(
    services: Services, agent_id: str | None, query: str | None, *, principal: Principal
) -> Updates:
    try:
        agent_id = _need_agent(agent_id)
        entry = services.lorebooks.add(agent_id, principal=principal)
        return {
            **_table(services, agent_id, query, principal),
            **_editor(entry),
            "status": f"Added entry #{entry.index}: give it keys and content, then **Save entry**.",
        }
    except AnimaError as exc:
        return {"status": show_error(exc)}


def save_entry(
    services: Services,
    agent_id: str | None,
    query: str | None,
    index: float | None,
    *values: Any,
    principal: Principal,
) -> Updates:
    """Store the editor's fields; only the ones that changed are written."""
    fields = dict(zip(EDITOR[1:], values, strict=True))
    try:
        agent_id = _need_agent(agent_id)
        number = _need_entry(index)
        patch = EntryPatch(
            enabled=bool(fields["enabled"]),
            keys=split_keys(fields["keys"]),
            secondary_keys=split_keys(fields["secondary_keys"]),
            comment=fields["comment"] or "",
            content=fields["content"] or "",
            constant=bool(fields["constant"]),
            use_regex=bool(fields["use_regex"]),
            selective_logic=int(fields["selective_logic"] or 0),
            position=fields["position"] or "before_char",
            depth=None if fields["depth"] in (None, "") else int(fields["depth"]),
            order=int(fields["order"] or 0),
            probability=int(fields["probability"] if fields["probability"] is not None else 100),
        )
        entry = services.lorebooks.update(agent_id, number, patch, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    except ValueError as exc:  # pydantic's bounds, said plainly
        return {"status": show_error(_plain(exc))}
    return {
        **_table(services, agent_id, query, principal),
        "status": f"Saved entry #{entry.index}.",
    }


def _plain(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


def duplicate_entry(
    services: Services,
    agent_id: str | None,
    query: str | None,
    index: float | None,
    *,
    principal: Principal,
) -> Updates:
    try:
        agent_id = _need_agent(agent_id)
        entry = services.lorebooks.duplicate(agent_id, _need_entry(index), principal=principal)
        return {
            **_table(services, agent_id, query, principal),
            **_editor(entry),
            "status": f"Duplicated into entry #{entry.index}.",
        }
    except AnimaError as exc:
        return {"status": show_error(exc)}


def delete_entry(
    services: Services,
    agent_id: str | None,
    query: str | None,
    index: float | None,
    *,
    principal: Principal,
) -> Updates:
    try:
        agent_id = _need_agent(agent_id)
        number = _need_entry(index)
        services.lorebooks.delete(agent_id, [number], principal=principal)
        return {
            **_table(services, agent_id, query, principal),
            **_editor(None),
            "status": f"Deleted entry #{number}.",
        }
    except AnimaError as exc:
        return {"status": show_error(exc)}


def set_enabled(
    services: Services,
    agent_id: str | None,
    query: str | None,
    indexes: list[int] | None,
    enabled: bool,
    *,
    principal: Principal,
) -> Updates:
    try:
        agent_id = _need_agent(agent_id)
        if not indexes:
            raise ValidationError("pick the entries to change in the list first")
        changed = services.lorebooks.set_enabled(
            agent_id, [int(i) for i in indexes], enabled, principal=principal
        )
        word = "Enabled" if enabled else "Disabled"
        return {
            **_table(services, agent_id, query, principal),
            "status": f"{word} {len(changed)} entries.",
        }
    except AnimaError as exc:
        return {"status": show_error(exc)}


def delete_many(
    services: Services,
    agent_id: str | None,
    query: str | None,
    indexes: list[int] | None,
    *,
    principal: Principal,
) -> Updates:
    try:
        agent_id = _need_agent(agent_id)
        if not indexes:
            raise ValidationError("pick the entries to delete in the list first")
        services.lorebooks.delete(agent_id, [int(i) for i in indexes], principal=principal)
        return {
            **_table(services, agent_id, query, principal),
            **_editor(None),
            "status": f"Deleted {len(indexes)} entries.",
        }
    except AnimaError as exc:
        return {"status": show_error(exc)}


def export_world_info(services: Services, agent_id: str | None, *, principal: Principal) -> Updates:
    """The card's own book as a SillyTavern world-info file to download."""
    try:
        agent_id = _need_agent(agent_id)
        body = services.lorebooks.export_world_info(agent_id, principal=principal)
        name = services.agents.get_agent(agent_id).name
    except AnimaError as exc:
        return {"book_file": gr.update(value=None, visible=False), "book_status": show_error(exc)}
    path = export_path(f"{name} lorebook.json")
    path.write_text(json.dumps(body, ensure_ascii=False, indent=2), encoding="utf-8")
    count = len(body["entries"])
    return {
        "book_file": gr.update(value=str(path), visible=True),
        "book_status": f"Exported {count} entries.",
    }


def import_world_info(
    services: Services, agent_id: str | None, path: str | None, *, principal: Principal
) -> Updates:
    """Store an uploaded world-info file as a book and attach it to this agent."""
    if not path:
        return {}
    try:
        agent_id = _need_agent(agent_id)
        with open(path, "rb") as handle:
            content = handle.read(services.settings.server.max_upload_bytes + 1)
        book = services.lorebooks.import_world_info(
            content, path.rsplit("/", 1)[-1], principal=principal, attach_to=agent_id
        )
        message = f"Imported **{book.name}** ({book.entries} entries) and attached it."
        return {**_books(services, agent_id, principal), "book_status": message}
    except AnimaError as exc:
        return {"book_status": show_error(exc)}


def attach(
    services: Services, agent_id: str | None, book_id: str | None, *, principal: Principal
) -> Updates:
    try:
        agent_id = _need_agent(agent_id)
        if not book_id:
            raise ValidationError("pick one of your books to attach")
        book = services.lorebooks.attach(agent_id, book_id, principal=principal)
        return {
            **_books(services, agent_id, principal),
            "book_status": f"Attached **{book.name}**.",
        }
    except AnimaError as exc:
        return {"book_status": show_error(exc)}


def detach(
    services: Services, agent_id: str | None, book_id: str | None, *, principal: Principal
) -> Updates:
    try:
        agent_id = _need_agent(agent_id)
        if not book_id:
            raise ValidationError("pick an attached book to detach")
        services.lorebooks.detach(agent_id, book_id, principal=principal)
        return {**_books(services, agent_id, principal), "book_status": "Detached."}
    except AnimaError as exc:
        return {"book_status": show_error(exc)}
