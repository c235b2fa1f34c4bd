"""Card JSON: parse V1/V2/V3 cards, fill the spec's defaults, write V2 or V3, hash a card.

The one rule is *lossless*: whatever a card brings that we do not use comes back out unchanged;
only missing required fields get the spec's defaults, so every card we hold is complete.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import pydantic
from eth_hash.auto import keccak

from agents.schema import SPEC_V2, SPEC_V3, Card, CardData
from core.errors import (
    CardFormatError,
    describe_validation_error,
)

CardSpec = Literal["v2", "v3"]


# The V1 fields: a V1 card has them at the top level, V2/V3 cards keep them in ``data``.
_V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")


# Required ``data`` fields of the V2 spec with the value a missing one takes.
_V2_DEFAULTS: dict[str, Any] = {
    "name": "",
    "description": "",
    "personality": "",
    "scenario": "",
    "first_mes": "",
    "mes_example": "",
    "creator_notes": "",
    "system_prompt": "",
    "post_history_instructions": "",
    "alternate_greetings": [],
    "tags": [],
    "creator": "",
    "character_version": "",
    "extensions": {},
}


# V3 makes one more field required.
_V3_DEFAULTS: dict[str, Any] = {"group_only_greetings": []}


_BOOK_DEFAULTS: dict[str, Any] = {"extensions": {}, "entries": []}


_ENTRY_DEFAULTS: dict[str, Any] = {
    "keys": [],
    "content": "",
    "extensions": {},
    "enabled": True,
    "insertion_order": 0,
}


_V3_ENTRY_DEFAULTS: dict[str, Any] = {"use_regex": False}


# Top-level keys SillyTavern mirrors from ``data`` (top-level key -> dotted path in data).
# On export a mirror that the card carries is refreshed so that it never disagrees with data.
_MIRRORS: dict[str, str] = {
    **{key: key for key in _V1_FIELDS},
    "creatorcomment": "creator_notes",
    "tags": "tags",
    "talkativeness": "extensions.talkativeness",
    "fav": "extensions.fav",
}


def parse_card_json(raw: bytes | str | dict[str, Any]) -> Card:
    """Parse a V3, V2 or V1 card into a :class:`Card`.

    ``data`` is kept exactly as given: nothing is added, so a V2 card exported as V2 gives back
    the very ``data`` it came with (fields it lacks read as the model's defaults). Exports
    fill in what their spec requires otherwise (:func:`card_to_json`).
    V1 cards (flat fields, no ``spec``) are upgraded to V2: their fields move into ``data``
    (with the V2 defaults, since we write that ``data``) and their other top-level keys stay in
    ``Card.extra``.
    """
    obj = _load_json_object(raw)
    spec = obj.get("spec")
    extra = {
        k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "spec_version", "data")
    }

    if spec is None and "data" not in obj:
        return _upgrade_v1(obj)
    if spec is None:
        spec = SPEC_V2  # a V2 envelope that lost its spec key: ``data`` says what it is
    if spec not in (SPEC_V2, SPEC_V3):
        raise CardFormatError(
            f"unsupported card spec {spec!r} (expected '{SPEC_V2}' or '{SPEC_V3}')"
        )
    data = obj.get("data")
    if data is None:
        raise CardFormatError("character card has no 'data' object")
    if not isinstance(data, dict):
        raise CardFormatError("character card field 'data' must be an object")
    default_version = "3.0" if spec == SPEC_V3 else "2.0"
    version = obj.get("spec_version", default_version)
    return Card(
        spec=spec,
        spec_version=str(version),
        data=_validate_data(data),
        extra=extra,
    )


def _load_json_object(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        # json.loads detects UTF-8 (with or without BOM), UTF-16 and UTF-32 in bytes.
        if isinstance(raw, str):
            raw = raw.lstrip("\ufeff")
        obj = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise CardFormatError(f"character card JSON is not valid UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CardFormatError(
            f"character card is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(obj, dict):
        raise CardFormatError(f"character card JSON must be an object, not {type(obj).__name__}")
    return obj


def _upgrade_v1(obj: dict[str, Any]) -> Card:
    """V1 -> V2 the way SillyTavern does it: V1 fields move into ``data``.

    SillyTavern's V1 files also carry ``tags`` and ``creatorcomment``; they are copied into
    ``data`` (and stay at the top level as mirrors) so that refreshing the mirrors on export
    cannot wipe them.
    """
    if "name" not in obj:
        raise CardFormatError(
            "character card has no 'spec' and no 'name': it is neither a V2/V3 card nor a V1 card"
        )
    data = {key: obj[key] for key in _V1_FIELDS if key in obj}
    if isinstance(obj.get("tags"), list):
        data["tags"] = obj["tags"]
    if isinstance(obj.get("creatorcomment"), str):
        data["creator_notes"] = obj["creatorcomment"]
    extra = {k: copy.deepcopy(v) for k, v in obj.items() if k not in _V1_FIELDS}
    data = with_spec_defaults(data, "v2")
    return Card(spec=SPEC_V2, spec_version="2.0", data=_validate_data(data), extra=extra)


def _validate_data(data: dict[str, Any]) -> CardData:
    try:
        return CardData.model_validate(data)
    except pydantic.ValidationError as exc:
        raise CardFormatError(
            "invalid character card: " + describe_validation_error(exc, "data")
        ) from exc


def with_spec_defaults(data: dict[str, Any], spec: CardSpec) -> dict[str, Any]:
    """A copy of ``data`` with every field the ``spec`` (V2 or V3) requires present.

    Only missing (or ``null``) required fields are filled; nothing is overwritten or
    removed. Lorebook entries get their required fields too. V3-only fields
    (``group_only_greetings``, an entry's ``use_regex``) are added only for V3. Wrong types
    are left alone for validation to report.
    """
    out = dict(data)
    required = {**_V2_DEFAULTS, **(_V3_DEFAULTS if spec == "v3" else {})}
    for key, default in required.items():
        if key == "name":
            continue  # required: a missing name is an error, not an empty string
        if out.get(key) is None:
            out[key] = _fresh(default)
    book = out.get("character_book")
    if isinstance(book, dict):
        book = dict(book)
        for key, default in _BOOK_DEFAULTS.items():
            if book.get(key) is None:
                book[key] = _fresh(default)
        if isinstance(book["entries"], list):
            book["entries"] = [_entry_with_defaults(e, spec) for e in book["entries"]]
        out["character_book"] = book
    return out


def _entry_with_defaults(entry: Any, spec: CardSpec) -> Any:
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    required = {**_ENTRY_DEFAULTS, **(_V3_ENTRY_DEFAULTS if spec == "v3" else {})}
    for key, default in required.items():
        if entry.get(key) is None:
            entry[key] = _fresh(default)
    return entry


def _fresh(default: Any) -> Any:
    """A new copy of a mutable default so that cards never share one list or dict."""
    return type(default)() if isinstance(default, list | dict) else default


def card_to_json(card: Card, spec: CardSpec) -> dict[str, Any]:
    """The export envelope ``{"spec", "spec_version", "data", ...extra}``.

    A V3 export is a complete V3 card: required fields the card lacks get the spec's
    defaults. A V2 card exported as V2 comes back exactly as it was imported (no key added);
    a V3 card exported as V2 gets V2's required fields. V3-only keys stay in a V2 export
    (SillyTavern does the same in its ``chara`` chunk, and dropping them would lose data).
    Unknown keys always come back unchanged.
    Top-level mirrors of ``data`` (SillyTavern's V1 fields) are refreshed from ``data``.
    """
    spec_name, default_version = (SPEC_V3, "3.0") if spec == "v3" else (SPEC_V2, "2.0")
    version = card.spec_version if card.spec == spec_name else default_version
    data = card.data.dump()
    if spec == "v3" or card.spec != SPEC_V2:
        data = with_spec_defaults(data, spec)
    extra = {
        k: copy.deepcopy(v)
        for k, v in card.extra.items()
        if k not in ("spec", "spec_version", "data")
    }
    for key, path in _MIRRORS.items():
        if key in extra:
            found, value = _lookup(data, path)
            if found:
                extra[key] = value
    return {"spec": spec_name, "spec_version": version, "data": data, **extra}


def _lookup(data: dict[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def canonical_json(card: Card) -> bytes:
    """The card's V3 JSON with sorted keys and no whitespace: one byte string per card."""
    return json.dumps(
        card_to_json(card, "v3"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def content_hash(card: Card) -> str:
    """``0x`` + keccak-256 of :func:`canonical_json`.

    Keccak-256 rather than SHA-256 because the hash is meant to be compared on chain: an
    EVM contract can recompute ``keccak256(bytes)`` natively (SHA-256 is a precompile call),
    and web3 tooling prints it in this ``0x`` form, so the value stored with an agent's
    token URI can be checked against the card without any conversion.
    """
    return "0x" + keccak(canonical_json(card)).hex()
