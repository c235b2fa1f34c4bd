"""Any card file: tell PNG, CHARX and JSON apart by their bytes, then read it with its reader."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from agents.cards.charx import main_icon, read_charx
from agents.cards.json_format import parse_card_json
from agents.cards.png import DEFAULT_MAX_CARD_TEXT_BYTES, read_png_card
from agents.images import DEFAULT_MAX_PIXELS, PNG_SIGNATURE
from agents.schema import Card
from core.errors import (
    CardFormatError,
    UploadTooLargeError,
)

CardFormat = Literal["png", "json", "charx"]


_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # local file header; empty archive


def detect_format(filename: str | None, head: bytes) -> CardFormat:
    """Tell PNG, CHARX (zip) and JSON apart by their first bytes.

    The magic bytes decide, not the file name: people rename files, and a ``.png`` that is
    really a JPEG must not reach the PNG reader. The name only makes the error clearer.
    """
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(_ZIP_MAGICS):
        return "charx"
    if _looks_like_json_object(head):
        return "json"
    what = f"'{filename}'" if filename else "the file"
    raise CardFormatError(
        f"unsupported file type: {what} is not a character card "
        "(expected a PNG image, a JSON file or a CHARX archive)"
    )


def _looks_like_json_object(head: bytes) -> bool:
    """True if ``head`` starts (after any BOM and whitespace) with ``{``, in UTF-8/16/32."""
    if not head:
        return False
    encoding = json.detect_encoding(head)
    text = head.decode(encoding, errors="ignore").lstrip("\ufeff \t\r\n")
    return text.startswith("{")


@dataclass(frozen=True)
class ImportedCard:
    """What a card file holds: the card, its avatar (if any) and CHARX asset files."""

    card: Card
    format: CardFormat
    avatar: bytes | None = None
    assets: dict[str, bytes] = field(default_factory=dict)


def read_card_file(
    filename: str | None,
    data: bytes,
    max_total_bytes: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_text_bytes: int = DEFAULT_MAX_CARD_TEXT_BYTES,
) -> ImportedCard:
    """Read a card file of any supported format (found by :func:`detect_format`).

    ``max_total_bytes`` bounds the file itself and, for CHARX, what it unpacks to;
    ``max_pixels`` the PNG's image (read from its header); ``max_text_bytes`` what a PNG's
    compressed card chunk may inflate to.
    """
    if len(data) > max_total_bytes:
        raise UploadTooLargeError(
            f"card file is {len(data)} bytes, more than the limit of {max_total_bytes} bytes"
        )
    kind = detect_format(filename, data[:64])
    if kind == "png":
        card, image = read_png_card(data, max_pixels=max_pixels, max_text_bytes=max_text_bytes)
        return ImportedCard(card=card, format=kind, avatar=image)
    if kind == "charx":
        card, assets = read_charx(data, max_total_bytes)
        return ImportedCard(card=card, format=kind, avatar=main_icon(card, assets), assets=assets)
    return ImportedCard(card=parse_card_json(data), format=kind)
