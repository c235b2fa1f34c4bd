"""FastAPI dependencies: the services built once in ``app.py``, and bounded uploads."""

from __future__ import annotations

from fastapi import Request, UploadFile

from container import Services
from core.errors import UploadTooLargeError

CHUNK = 1024 * 1024


def services(request: Request) -> Services:
    return request.app.state.services


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """Read at most ``limit`` bytes; larger files are refused without reading them whole."""
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise UploadTooLargeError(
                f"file is larger than the {limit / 1e6:.1f} MB limit (ANIMA_MAX_UPLOAD_MB)"
            )
        parts.append(chunk)
    return b"".join(parts)
