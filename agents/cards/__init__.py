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

One module per format (``json_format``, ``png``, ``charx``) and ``detect`` to read any file;
image rules shared with avatars live in :mod:`agents.images`. All functions are pure: bytes in,
bytes or models out; no database, no web framework.
"""

from agents.cards.charx import (
    MAX_CHARX_ENTRIES,
    embedded_asset_path,
    main_icon,
    read_asset_archive,
    read_charx,
    write_asset_archive,
    write_charx,
    zip_entry_count,
)
from agents.cards.detect import CardFormat, ImportedCard, detect_format, read_card_file
from agents.cards.json_format import (
    CardSpec,
    canonical_json,
    card_to_json,
    content_hash,
    parse_card_json,
    with_spec_defaults,
)
from agents.cards.png import (
    DEFAULT_MAX_CARD_TEXT_BYTES,
    _Chunk,
    read_png_card,
    strip_text_chunks,
    write_png_card,
)
from agents.images import (
    DEFAULT_AVATAR_SIZE,
    DEFAULT_MAX_PIXELS,
    PNG_SIGNATURE,
    check_pixels,
    convert_to_png,
    image_size,
    render_default_avatar,
)

__all__ = [
    "DEFAULT_AVATAR_SIZE",
    "DEFAULT_MAX_CARD_TEXT_BYTES",
    "DEFAULT_MAX_PIXELS",
    "MAX_CHARX_ENTRIES",
    "PNG_SIGNATURE",
    "CardFormat",
    "CardSpec",
    "ImportedCard",
    "_Chunk",
    "canonical_json",
    "card_to_json",
    "check_pixels",
    "content_hash",
    "convert_to_png",
    "detect_format",
    "embedded_asset_path",
    "image_size",
    "main_icon",
    "parse_card_json",
    "read_asset_archive",
    "read_card_file",
    "read_charx",
    "read_png_card",
    "render_default_avatar",
    "strip_text_chunks",
    "with_spec_defaults",
    "write_asset_archive",
    "write_charx",
    "write_png_card",
    "zip_entry_count",
]
