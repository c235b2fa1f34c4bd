"""SillyTavern world-info files <-> the card's lorebook model, losslessly.

A world-info file is ``{"entries": {"0": {"uid": 0, "key": [...], "keysecondary": [...],
"comment": ..., "content": ..., "constant": ..., "selective": ..., "selectiveLogic": 0,
"order": 100, "position": 0, "disable": false, "probability": 100, "useProbability": true,
"depth": 4, ...}}, ...}``. We keep such a book in the same shape as a card's
``character_book`` (``agents.schema.CharacterBook``), so one activation engine
(``agents.lorebook``) and one editor serve both. The field names follow SillyTavern's own
conversion between the two (its ``convertWorldInfoToCharacterBook``): what ST keeps under an
entry's ``extensions`` we keep there too, so a card exported with an attached book's entries
reads in ST exactly as the book did.

Lossless: a field of a world-info entry lands in the model only when its value has the
model's type; every other field (ST adds new ones often: ``sticky``, ``group``, ``vectorized``,
...) is kept verbatim in the entry's ``extensions["world_info"]``, and the entry's slot in the
``entries`` object in ``extensions["world_info_slot"]``. The model is dumped with
``exclude_unset``, so a field the file did not have is not written back. Import then export
gives the same entries; the file's other top-level keys are kept in the book's extensions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.schema import CharacterBook, LorebookEntry
from core.errors import CardFormatError

BLOB = "world_info"  # extensions key: the entry's fields we do not model, verbatim
SLOT = "world_info_slot"  # extensions key: the entry's key in the file's "entries" object
BOOK_BLOB = "world_info_file"  # book extensions key: the file's top-level keys but entries


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _any(_: Any) -> bool:
    return True


# world-info field -> (where in the entry: "top" or "ext", its name there, type check)
_TOP: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "uid": ("id", lambda v: _is_int(v) or isinstance(v, str)),
    "key": ("keys", _is_str_list),
    "keysecondary": ("secondary_keys", _is_str_list),
    "comment": ("comment", _is_str),
    "content": ("content", _is_str),
    "constant": ("constant", _is_bool),
    "selective": ("selective", _is_bool),
    "order": ("insertion_order", _is_int),
}
_EXT: dict[str, str] = {
    "position": "position",
    "selectiveLogic": "selectiveLogic",
    "probability": "probability",
    "useProbability": "useProbability",
    "depth": "depth",
    "caseSensitive": "case_sensitive",
    "matchWholeWords": "match_whole_words",
    "scanDepth": "scan_depth",
    "preventRecursion": "prevent_recursion",
    "excludeRecursion": "exclude_recursion",
}
_POSITIONS = {0: "before_char", 1: "after_char"}


def entry_from_world_info(slot: str, raw: dict[str, Any]) -> LorebookEntry:
    """One world-info entry as a lorebook entry (see the module docstring)."""
    fields: dict[str, Any] = {}
    ext: dict[str, Any] = {}
    blob: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _TOP and _TOP[name][1](value):
            fields[_TOP[name][0]] = value
        elif name == "disable" and _is_bool(value):
            fields["enabled"] = not value
        elif name in _EXT:
            ext[_EXT[name]] = value
        else:
            blob[name] = value
    position = ext.get("position")
    if _is_int(position) and position in _POSITIONS:
        fields["position"] = _POSITIONS[position]
    fields["extensions"] = {**ext, BLOB: blob, SLOT: slot}
    return LorebookEntry.model_validate(fields)


def entry_to_world_info(entry: LorebookEntry, slot_uid: int) -> tuple[str, dict[str, Any]]:
    """(slot, world-info entry) for one lorebook entry.

    An entry that came from a world-info file writes back only the fields it had (plus what
    was edited since); one from a card or made in the editor gets SillyTavern's full set, so
    that ST reads it with the meaning it has here.
    """
    data = entry.dump()
    ext = dict(data.get("extensions") or {})
    from_file = BLOB in ext
    blob = ext.pop(BLOB, None) or {}
    slot = ext.pop(SLOT, None)
    raw: dict[str, Any] = {} if from_file else _st_defaults(entry, slot_uid)
    for wi_name, (name, _check) in _TOP.items():
        if name in data:
            raw[wi_name] = data[name]
    if "enabled" in data:
        raw["disable"] = not data["enabled"]
    reverse = {v: k for k, v in _EXT.items()}
    for name, value in ext.items():
        if name in reverse:
            raw[reverse[name]] = value
        elif not from_file:
            raw.setdefault("extensions", {})[name] = value
    if "position" in data and "position" not in ext:
        raw["position"] = 1 if data["position"] == "after_char" else 0
    raw.update(blob)
    if "uid" not in raw:
        raw["uid"] = slot_uid
    return (str(slot) if slot is not None else str(raw["uid"])), raw


def _st_defaults(entry: LorebookEntry, uid: int) -> dict[str, Any]:
    """What SillyTavern writes for a new entry, so a card's entry exports as ST would."""
    return {
        "uid": entry.id if entry.id is not None else uid,
        "key": [],
        "keysecondary": [],
        "comment": "",
        "content": "",
        "constant": False,
        "selective": True,
        "selectiveLogic": 0,
        "order": 100,
        "position": 0,
        "disable": False,
        "probability": 100,
        "useProbability": True,
        "depth": 4,
    }


def book_from_world_info(raw: Any, name: str | None = None) -> CharacterBook:
    """A parsed world-info file as a lorebook; ``CardFormatError`` names what is wrong."""
    if not isinstance(raw, dict) or "entries" not in raw:
        raise CardFormatError(
            'not a SillyTavern world-info file: expected a JSON object with "entries"'
        )
    entries = raw["entries"]
    if isinstance(entries, list):  # some exporters write a list; slots are then positions
        entries = {str(i): e for i, e in enumerate(entries)}
    if not isinstance(entries, dict):
        raise CardFormatError('"entries" must be an object of entries')
    converted: list[LorebookEntry] = []
    for slot, value in entries.items():
        if not isinstance(value, dict):
            raise CardFormatError(f"world-info entry {slot!r} is not an object")
        converted.append(entry_from_world_info(str(slot), value))
    top = {k: v for k, v in raw.items() if k != "entries"}
    book_name = raw.get("name") if isinstance(raw.get("name"), str) else name
    return CharacterBook.model_validate(
        {"name": book_name, "entries": converted, "extensions": {BOOK_BLOB: top}}
    )


def book_to_world_info(book: CharacterBook) -> dict[str, Any]:
    """The lorebook as a SillyTavern world-info file."""
    top = dict(book.extensions.get(BOOK_BLOB) or {})
    entries: dict[str, Any] = {}
    used: set[str] = set()
    for number, entry in enumerate(book.entries):
        slot, raw = entry_to_world_info(entry, number)
        while slot in used:  # a duplicated entry still carries its original's slot
            slot = str(max((int(s) for s in used if s.isdigit()), default=-1) + 1)
            if BLOB not in entry.extensions:
                raw["uid"] = int(slot)
        used.add(slot)
        entries[slot] = raw
    return {**top, "entries": entries}
