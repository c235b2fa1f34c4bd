"""Avatar images: validate what users upload and keep one PNG per agent.

A PNG is kept byte for byte (so a card's image round-trips exactly); other formats Pillow
reads (JPEG, WebP, GIF) are converted to PNG once. Anything Pillow cannot decode, or that
decodes to an absurd pixel count, is refused before it reaches the disk.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from agents.cards import PNG_SIGNATURE, convert_to_png
from core.errors import UploadTooLargeError, ValidationError

MAX_PIXELS = 64_000_000


def normalise_avatar(image: bytes, max_bytes: int) -> bytes:
    """PNG bytes for ``image``; raises a 4xx error for anything that is not a sane picture."""
    if len(image) > max_bytes:
        raise UploadTooLargeError(
            f"image is {len(image) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB"
        )
    try:
        with Image.open(io.BytesIO(image)) as probe:
            width, height = probe.size
            if width * height > MAX_PIXELS:
                raise ValidationError(f"image is {width}x{height} pixels; that is too large")
            fmt = probe.format
            probe.verify()
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise ValidationError(f"not a readable image: {exc}") from exc
    if fmt == "PNG" and image.startswith(PNG_SIGNATURE):
        return image
    png = convert_to_png(image)
    if png is None:
        raise ValidationError("not a readable image: it could not be decoded")
    return png
