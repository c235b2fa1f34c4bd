"""Avatar images: validate what users upload and keep one PNG per agent.

A PNG is kept byte for byte (so a card's image round-trips exactly); other formats Pillow
reads (JPEG, WebP, GIF) are converted to PNG once. The pixel count is read from the image's
header and capped before anything is decoded (a 600 kB PNG can declare 13000 x 13000 pixels,
0.7 GB once decoded); anything Pillow cannot decode is refused before it reaches the disk.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from agents.cards.png import strip_text_chunks
from agents.images import DEFAULT_MAX_PIXELS, PNG_SIGNATURE, check_pixels, convert_to_png
from core.errors import CardFormatError, UploadTooLargeError, ValidationError

MAX_PIXELS = DEFAULT_MAX_PIXELS


def normalise_avatar(image: bytes, max_bytes: int, max_pixels: int = MAX_PIXELS) -> bytes:
    """PNG bytes for ``image``; raises a 4xx error for anything that is not a sane picture."""
    if len(image) > max_bytes:
        raise UploadTooLargeError(
            f"image is {len(image) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB"
        )
    try:
        check_pixels(image, max_pixels)  # header only: nothing decoded yet
    except CardFormatError as exc:
        raise ValidationError(exc.message) from exc
    is_png = image.startswith(PNG_SIGNATURE)
    try:
        # A card's own text chunks are not the image: Pillow would inflate them all.
        pixels_only = strip_text_chunks(image) if is_png else image
    except CardFormatError as exc:
        raise ValidationError(f"not a readable image: {exc.message}") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(pixels_only)) as probe:
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
    if fmt == "PNG" and is_png:
        return image
    png = convert_to_png(image)
    if png is None:
        raise ValidationError("not a readable image: it could not be decoded")
    return png
