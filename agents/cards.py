"""Character card files: read and write SillyTavern V1/V2/V3 cards as PNG, JSON and CHARX.

Cards move between tools (SillyTavern, RisuAI, Chub, Anima), so the one rule here is
*lossless*: whatever a card brings that we do not use (unknown ``extensions`` keys, unknown
``data`` keys, lorebook entry fields, top-level keys) comes back out unchanged. The pydantic
models in :mod:`agents.schema` keep extra keys; this module only adds the spec's defaults for
missing required fields so that every card we hold (and export) is a complete, valid card.

PNG cards are handled at chunk level (``struct`` + ``zlib.crc32``) rather than by re-encoding
with Pillow, so that exporting a card never touches the avatar's pixels or its other chunks.
Pillow is still used to prove the image decodes, to convert JPEG/WebP avatars and to draw a
default avatar.

All functions are pure: bytes in, bytes or models out; no database, no web framework.
"""

from __future__ import annotations

import base64
import binascii
import colorsys
import copy
import hashlib
import io
import json
import re
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from eth_hash.auto import keccak
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from agents.schema import SPEC_V2, SPEC_V3, Card, CardData
from core.errors import (
    CardFormatError,
    UnsafePathError,
    UploadTooLargeError,
    describe_validation_error,
)

CardFormat = Literal["png", "json", "charx"]
CardSpec = Literal["v2", "v3"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # local file header; empty archive
_CARD_KEYWORDS = ("ccv3", "chara")  # preferred first, as SillyTavern reads them
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
# What a card's compressed text chunk may inflate to by default (the service passes the upload
# limit): a card JSON is at most a few MB, and the cap stops a small PNG from expanding into
# gigabytes. Only the chunk actually read is inflated, never its duplicates.
DEFAULT_MAX_CARD_TEXT_BYTES = 20 * 1024 * 1024
# Width x height an image may declare (ANIMA_MAX_IMAGE_PIXELS), checked in its header before
# any pixel is decoded: a 600 kB PNG can declare 13000 x 13000 pixels, 0.7 GB once decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# A CHARX is a card plus its images; more files than this is an attack on the file system.
MAX_CHARX_ENTRIES = 1_000
_CHARX_CARD = "card.json"
_EMBEDDED_PREFIXES = ("embeded://", "embedded://")  # the spec's spelling first
# Fixed timestamp so that writing the same card twice gives byte-identical archives.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
DEFAULT_AVATAR_SIZE = (400, 600)

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


# --------------------------------------------------------------------------- format detection


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


# --------------------------------------------------------------------------- JSON


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


# --------------------------------------------------------------------------- PNG


@dataclass(frozen=True)
class _Chunk:
    type: bytes
    data: bytes

    def encode(self) -> bytes:
        crc = zlib.crc32(self.type + self.data) & 0xFFFFFFFF
        return struct.pack(">I", len(self.data)) + self.type + self.data + struct.pack(">I", crc)


def _read_chunks(png: bytes) -> list[_Chunk]:
    """Split a PNG into chunks, checking the signature, every CRC and the end (IEND)."""
    if not png.startswith(PNG_SIGNATURE):
        raise CardFormatError("not a PNG image (bad signature)")
    chunks: list[_Chunk] = []
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(png):
            raise CardFormatError("PNG is truncated: the file ends before its IEND chunk")
        length, ctype = struct.unpack(">I4s", png[pos : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(png):
            raise CardFormatError(
                f"PNG is truncated: chunk {ctype.decode('latin-1')!r} runs past the end of the file"
            )
        body = png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[end - 4 : end])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise CardFormatError(
                f"PNG is corrupt: chunk {ctype.decode('latin-1')!r} has a bad CRC checksum"
            )
        chunks.append(_Chunk(ctype, body))
        pos = end
        if ctype == b"IEND":
            break
    if chunks[0].type != b"IHDR":
        raise CardFormatError("PNG is corrupt: it does not start with an IHDR chunk")
    return chunks


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height as the image's header declares them; no pixel is decoded.

    PNG: read from IHDR directly. Other formats: Pillow's lazy ``open`` (header only), with
    its own decompression-bomb refusal turned into our "too large" error.
    """
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise CardFormatError("PNG is corrupt: it does not start with an IHDR chunk")
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                return probe.size
    except Image.DecompressionBombError as exc:
        raise UploadTooLargeError(
            f"image declares more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels; "
            "it was refused before decoding"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CardFormatError(f"not a readable image: {exc}") from exc


def check_pixels(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The image's size, or a 413 if its header declares more than ``max_pixels`` pixels."""
    width, height = image_size(data)
    if width * height > max_pixels:
        raise UploadTooLargeError(
            f"image is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels); the "
            f"limit is {max_pixels / 1e6:,.0f} megapixels (ANIMA_MAX_IMAGE_PIXELS). It was "
            "refused before decoding"
        )
    return width, height


def _check_decodable(png: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Prove Pillow can decode the image, not just that its chunks are well formed.

    The pixel cap is checked on the header first, so an image that would decode to gigabytes
    is refused before Pillow allocates anything. Text chunks are left out of what Pillow sees:
    they are not part of the image, and Pillow would inflate them all (the card chunks are
    read, lazily and capped, by :func:`read_png_card`).
    """
    check_pixels(png, max_pixels)
    try:
        image_only = strip_text_chunks(png)
    except CardFormatError:
        image_only = png
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image_only)) as im:
                im.verify()
            with Image.open(io.BytesIO(image_only)) as im:
                im.load()
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError, ...
        raise CardFormatError(f"PNG image cannot be decoded: {exc}") from exc


def strip_text_chunks(png: bytes) -> bytes:
    """The PNG without its text chunks: what an image decoder needs, never a card's text."""
    chunks = [c for c in _read_chunks(png) if c.type not in _TEXT_CHUNKS]
    return PNG_SIGNATURE + b"".join(c.encode() for c in chunks)


def _text_chunk(chunk: _Chunk, max_bytes: int) -> tuple[str, bytes | None]:
    """Keyword and raw text of a tEXt/zTXt/iTXt chunk (text is None if it cannot be read).

    Compressed text is inflated up to ``max_bytes``; more is a decompression bomb (413).
    """
    keyword, _, rest = chunk.data.partition(b"\0")
    name = keyword.decode("latin-1")
    try:
        if chunk.type == b"tEXt":
            return name, rest
        if chunk.type == b"zTXt":
            return name, _inflate(rest[1:], name, max_bytes)
        # iTXt: compression flag, method, language tag \0, translated keyword \0, text
        flag = rest[0]
        _lang, _, rest = rest[2:].partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return name, _inflate(text, name, max_bytes) if flag else text
    except (IndexError, zlib.error):
        return name, None


def _inflate(data: bytes, keyword: str, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, max_bytes)
    if inflater.unconsumed_tail:
        raise UploadTooLargeError(
            f"PNG '{keyword}' chunk inflates to more than {max_bytes / 1e6:.1f} MB "
            "(ANIMA_MAX_UPLOAD_MB); a character card is never that large"
        )
    return out


def _is_card_chunk(chunk: _Chunk) -> bool:
    if chunk.type not in _TEXT_CHUNKS:
        return False
    keyword = chunk.data.partition(b"\0")[0].decode("latin-1").lower()
    return keyword in _CARD_KEYWORDS


def _decode_card_text(keyword: str, text: bytes | None) -> Card:
    """A card chunk holds base64 of UTF-8 JSON; a few writers store the JSON itself."""
    if text is None:
        raise CardFormatError(f"PNG '{keyword}' chunk cannot be read (bad compression)")
    stripped = text.strip()
    if stripped.startswith(b"{"):
        return parse_card_json(stripped)
    try:
        compact = b"".join(stripped.split())
        decoded = base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CardFormatError(f"PNG '{keyword}' chunk is not valid base64: {exc}") from exc
    return parse_card_json(decoded)


def read_png_card(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_text_bytes: int = DEFAULT_MAX_CARD_TEXT_BYTES,
) -> tuple[Card, bytes]:
    """Read the card from a PNG: the ``ccv3`` chunk if there is one, else ``chara``.

    Returns the card and the PNG bytes as given (the avatar). A ``ccv3`` chunk that cannot
    be parsed falls back to ``chara`` when that one is good, as both should hold the same
    card; if neither works the ``ccv3`` error is reported. Only the first chunk of each
    keyword counts (as in SillyTavern), and a chunk is inflated only when it is read: the
    first card that parses ends the search, so duplicates and the other keyword's chunk are
    never inflated. An image larger than ``max_pixels`` is refused before it is decoded.
    """
    chunks = _read_chunks(data)
    _check_decodable(data, max_pixels)
    found: dict[str, _Chunk] = {}
    for chunk in chunks:
        if _is_card_chunk(chunk):
            keyword = chunk.data.partition(b"\0")[0].decode("latin-1").lower()
            found.setdefault(keyword, chunk)  # the first one wins, as in SillyTavern
    if not found:
        raise CardFormatError("PNG has no character card (no 'chara' or 'ccv3' text chunk)")
    first_error: CardFormatError | None = None
    for keyword in _CARD_KEYWORDS:
        if keyword in found:
            _, text = _text_chunk(found[keyword], max_text_bytes)
            try:
                return _decode_card_text(keyword, text), data
            except CardFormatError as exc:
                first_error = first_error or exc
    assert first_error is not None
    raise first_error


def write_png_card(card: Card, image: bytes | None) -> bytes:
    """The avatar PNG with the card in a ``chara`` (V2) and a ``ccv3`` (V3) tEXt chunk.

    Existing card chunks are removed and the new ones go right before IEND, as SillyTavern
    writes them. Every other chunk is copied as is, so the pixels stay byte-identical. A
    JPEG/WebP/GIF avatar is converted to PNG; a missing or unreadable one is replaced by
    :func:`render_default_avatar`.
    """
    chunks = _avatar_chunks(image, card.data.name)
    kept = [c for c in chunks if c.type != b"IEND" and not _is_card_chunk(c)]
    card_chunks = [
        _Chunk(b"tEXt", b"chara\0" + _b64_json(card_to_json(card, "v2"))),
        _Chunk(b"tEXt", b"ccv3\0" + _b64_json(card_to_json(card, "v3"))),
    ]
    parts = [PNG_SIGNATURE, *(c.encode() for c in [*kept, *card_chunks, _Chunk(b"IEND", b"")])]
    return b"".join(parts)


def _b64_json(obj: dict[str, Any]) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(text.encode("utf-8"))


def _avatar_chunks(image: bytes | None, name: str) -> list[_Chunk]:
    if image:
        if image.startswith(PNG_SIGNATURE):
            try:
                chunks = _read_chunks(image)
                _check_decodable(image, max_pixels=2**62)  # stored: checked when it came in
                return chunks
            except CardFormatError:
                pass  # maybe Pillow can still salvage it below
        converted = convert_to_png(image)
        if converted is not None:
            return _read_chunks(converted)
    return _read_chunks(render_default_avatar(name))


def convert_to_png(image: bytes) -> bytes | None:
    """Re-encode any image Pillow reads as PNG (first frame; EXIF rotation applied)."""
    try:
        with Image.open(io.BytesIO(image)) as im:
            im.load()
            frame = ImageOps.exif_transpose(im)
            if frame.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
                has_alpha = "A" in frame.mode or "transparency" in frame.info
                frame = frame.convert("RGBA" if has_alpha else "RGB")
            out = io.BytesIO()
            frame.save(out, format="PNG")
            return out.getvalue()
    except Exception:  # anything Pillow cannot read means "no usable avatar"
        return None


def render_default_avatar(name: str) -> bytes:
    """A 400x600 PNG: a colour picked from the name, with its initial in the middle.

    The colour comes from a hash of the name, so the same agent always gets the same
    avatar and exports stay reproducible.
    """
    width, height = DEFAULT_AVATAR_SIZE
    hue = hashlib.sha256(name.encode("utf-8")).digest()[0] / 255
    red, green, blue = colorsys.hls_to_rgb(hue, 0.42, 0.45)
    background = (round(red * 255), round(green * 255), round(blue * 255))
    im = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(im)
    letter = next((ch for ch in name if ch.isalnum()), "?").upper()
    font = ImageFont.load_default(size=width // 2)
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
    origin = ((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top)
    draw.text(origin, letter, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


# --------------------------------------------------------------------------- CHARX


def _safe_archive_path(name: str) -> str:
    """The normalised form of an archive path, or UnsafePathError if it could escape.

    Rejects absolute paths, drive letters, backslashes (a Windows separator that would
    hide ``..\\``) and ``..`` segments; drops ``.`` and empty segments.
    """
    if "\\" in name:
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r} contains a backslash")
    if name.startswith("/"):
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r} is absolute")
    if re.match(r"^[A-Za-z]:", name):
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r} has a drive letter")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r} contains '..'")
    if "\0" in name or not parts:
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r}")
    return "/".join(parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return (mode & 0o170000) == 0o120000


def zip_entry_count(data: bytes) -> int | None:
    """How many entries a zip's end-of-central-directory record declares (None if unknown).

    Read before ``zipfile`` parses the central directory, which builds one object per entry:
    an archive of 100,000 tiny files is refused without that work.
    """
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return None
    (count,) = struct.unpack("<H", data[end + 10 : end + 12])
    if count != 0xFFFF:
        return count
    locator = end - 20  # ZIP64: the locator sits right before the classic record
    if locator < 0 or data[locator : locator + 4] != b"PK\x06\x07":
        return None
    (offset,) = struct.unpack("<Q", data[locator + 8 : locator + 16])
    if data[offset : offset + 4] != b"PK\x06\x06":
        return None
    (count64,) = struct.unpack("<Q", data[offset + 32 : offset + 40])
    return count64


def read_charx(
    data: bytes, max_total_bytes: int, max_entries: int = MAX_CHARX_ENTRIES
) -> tuple[Card, dict[str, bytes]]:
    """Read a CHARX archive: ``card.json`` at the root plus asset files.

    Returns the card and every other file keyed by its normalised path (for example
    ``assets/icon/images/main.png``), so that exporting writes them all back. Every entry
    is checked before anything is read: one unsafe name or symlink rejects the archive.
    The declared sizes must add up to at most ``max_total_bytes``, and the bytes actually
    inflated are counted too, so an archive that lies in its headers is still stopped. At
    most ``max_entries`` entries are accepted, counted before the archive is parsed.
    """
    declared_entries = zip_entry_count(data)
    if declared_entries is not None and declared_entries > max_entries:
        raise UploadTooLargeError(
            f"CHARX archive has {declared_entries:,} entries; at most {max_entries:,} are "
            "accepted (a card and its images)"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise CardFormatError(f"not a valid CHARX (zip) archive: {exc}") from exc
    with archive:
        if len(archive.infolist()) > max_entries:  # the record above lied
            raise UploadTooLargeError(
                f"CHARX archive has more than {max_entries:,} entries (a card and its images)"
            )
        entries: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            path = _safe_archive_path(info.filename)
            if _is_symlink(info):
                raise UnsafePathError(
                    f"unsafe path in CHARX archive: {info.filename!r} is a symbolic link"
                )
            if info.is_dir():
                continue
            if path in entries:
                raise CardFormatError(f"CHARX archive has two entries named {path!r}")
            entries[path] = info
        declared = sum(info.file_size for info in entries.values())
        if declared > max_total_bytes:
            raise UploadTooLargeError(
                f"CHARX archive unpacks to {declared} bytes, more than the limit of "
                f"{max_total_bytes} bytes"
            )
        if _CHARX_CARD not in entries:
            raise CardFormatError("CHARX archive has no card.json at its root")
        files: dict[str, bytes] = {}
        budget = max_total_bytes
        for path, info in entries.items():
            files[path] = _read_entry(archive, info, budget, max_total_bytes)
            budget -= len(files[path])
    card = parse_card_json(files.pop(_CHARX_CARD))
    return card, files


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, limit: int) -> bytes:
    try:
        with archive.open(info) as handle:
            content = handle.read(budget + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CardFormatError(f"CHARX entry {info.filename!r} is corrupt: {exc}") from exc
    except (RuntimeError, NotImplementedError) as exc:  # encrypted / unknown compression
        raise CardFormatError(f"CHARX entry {info.filename!r} cannot be read: {exc}") from exc
    if len(content) > budget:
        raise UploadTooLargeError(f"CHARX archive unpacks to more than the limit of {limit} bytes")
    return content


def write_charx(card: Card, assets: dict[str, bytes]) -> bytes:
    """A CHARX archive: ``card.json`` (V3) first, then each asset at its path.

    Entries get a fixed timestamp so the same card and assets always give the same bytes.
    An asset named ``card.json`` is ignored: the card itself is the one to write there.
    """
    card_json = json.dumps(card_to_json(card, "v3"), ensure_ascii=False, indent=2)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _write_entry(archive, _CHARX_CARD, card_json.encode("utf-8"))
        written = {_CHARX_CARD}
        for name, content in assets.items():
            path = _safe_archive_path(name)
            if path in written:
                continue
            _write_entry(archive, path, content)
            written.add(path)
    return out.getvalue()


def _write_entry(archive: zipfile.ZipFile, path: str, content: bytes) -> None:
    info = zipfile.ZipInfo(path, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    archive.writestr(info, content)


def write_asset_archive(assets: dict[str, bytes]) -> bytes:
    """All of a card's asset files in one uncompressed zip, the way an agent stores them.

    One file per agent rather than one per asset: an import then costs one fsync however
    many images the card brings. Stored, not deflated: the assets are mostly PNG/JPEG/WebP,
    already compressed. Paths are checked as for CHARX entries.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(assets):
            info = zipfile.ZipInfo(_safe_archive_path(name), date_time=_ZIP_EPOCH)
            info.external_attr = 0o100644 << 16
            archive.writestr(info, assets[name])
    return out.getvalue()


def read_asset_archive(blob: bytes) -> dict[str, bytes]:
    """The files of :func:`write_asset_archive`, keyed by path."""
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {
            _safe_archive_path(info.filename): archive.read(info)
            for info in archive.infolist()
            if not info.is_dir()
        }


def embedded_asset_path(uri: str) -> str | None:
    """The archive path an ``embeded://`` (or ``embedded://``) asset URI points to.

    None for other URIs (``ccdefault:``, http(s), data URIs); UnsafePathError if the path
    could escape the archive.
    """
    for prefix in _EMBEDDED_PREFIXES:
        if uri.startswith(prefix):
            return _safe_archive_path(uri[len(prefix) :])
    return None


def main_icon(card: Card, assets: dict[str, bytes]) -> bytes | None:
    """The bytes of the card's main icon from a CHARX, to use as the avatar.

    The V3 spec marks it as the ``icon`` asset named ``main``; failing that the first
    embedded icon is used. None if the card has no embedded icon.
    """
    icons = [a for a in card.data.assets or [] if a.type == "icon"]
    icons.sort(key=lambda a: a.name != "main")  # stable: "main" first, then card order
    for icon in icons:
        try:
            path = embedded_asset_path(icon.uri)
        except UnsafePathError:
            continue
        if path is not None and path in assets:
            return assets[path]
    return None


# --------------------------------------------------------------------------- any file


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
