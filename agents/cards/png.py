"""PNG cards: the card lives in ``chara`` (V2) and ``ccv3`` (V3) text chunks beside the avatar.

Handled at chunk level (``struct`` + ``zlib.crc32``) rather than by re-encoding with Pillow, so
exporting a card never touches the avatar's pixels or its other chunks. Card chunks are inflated
lazily and capped: a small PNG must not expand into gigabytes.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

from PIL import Image

from agents.cards.json_format import card_to_json, parse_card_json
from agents.images import (
    DEFAULT_MAX_PIXELS,
    PNG_SIGNATURE,
    check_pixels,
    convert_to_png,
    render_default_avatar,
)
from agents.schema import Card
from core.errors import (
    CardFormatError,
    UploadTooLargeError,
)

_CARD_KEYWORDS = ("ccv3", "chara")  # preferred first, as SillyTavern reads them


_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


# What a card's compressed text chunk may inflate to by default (the service passes the upload
# limit): a card JSON is at most a few MB, and the cap stops a small PNG from expanding into
# gigabytes. Only the chunk actually read is inflated, never its duplicates.
DEFAULT_MAX_CARD_TEXT_BYTES = 20 * 1024 * 1024


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
