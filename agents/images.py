"""Images that come from users (avatars, card PNGs): read their size from the header, refuse
decompression bombs before decoding, convert any readable format to PNG, draw a default avatar.

Kept apart from the card formats because avatars, knowledge uploads and token metadata need the
same rules without knowing anything about character cards.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import struct
import warnings

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from core.errors import (
    CardFormatError,
    UploadTooLargeError,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# Width x height an image may declare (ANIMA_MAX_IMAGE_PIXELS), checked in its header before
# any pixel is decoded: a 600 kB PNG can declare 13000 x 13000 pixels, 0.7 GB once decoded.
DEFAULT_MAX_PIXELS = 40_000_000


DEFAULT_AVATAR_SIZE = (400, 600)


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
