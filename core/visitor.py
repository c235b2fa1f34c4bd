"""Anonymous visitors: a browser's identity without an account, kept in a signed cookie.

Conversations are private to whoever started them. A signed-in wallet is known by its session
or API key; a visitor who never signs in is known by a random id in the ``anima_visitor``
cookie. The cookie is signed with a key that never leaves the data folder (HMAC-SHA256), so a
visitor cannot write someone else's id into it: a forged or altered cookie is simply not an
identity, and the browser gets a fresh one. ``api.visitor`` issues the cookie; the API's
``caller`` and the studio's ``principal_of`` read it through ``VisitorIds.verify``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

VISITOR_COOKIE = "anima_visitor"
# Browsers cap a cookie's lifetime at 400 days; a visitor who comes back keeps their chats.
VISITOR_MAX_AGE_S = 400 * 24 * 3600
_KEY_FILE = "visitor.key"


class VisitorIds:
    """Makes and checks signed visitor cookies (``<id>.<signature>``)."""

    def __init__(self, data_dir: Path) -> None:
        self._key = _load_or_create_key(data_dir / _KEY_FILE)

    def new(self) -> tuple[str, str]:
        """A fresh visitor: ``(visitor id, cookie value)``."""
        visitor_id = secrets.token_hex(16)
        return visitor_id, f"{visitor_id}.{self._sign(visitor_id)}"

    def verify(self, cookie: str | None) -> str | None:
        """The visitor id a cookie holds, or ``None`` if it is missing, malformed or forged."""
        if not cookie or cookie.count(".") != 1:
            return None
        visitor_id, signature = cookie.split(".")
        if len(visitor_id) != 32 or not all(c in "0123456789abcdef" for c in visitor_id):
            return None
        return visitor_id if hmac.compare_digest(signature, self._sign(visitor_id)) else None

    def _sign(self, visitor_id: str) -> str:
        digest = hmac.new(self._key, f"visitor:{visitor_id}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _load_or_create_key(path: Path) -> bytes:
    """The signing key, made once per install (readable by this user only).

    Written whole to a temporary file and linked into place (a link never replaces a file), so
    two processes starting together (the app and a job worker) end up with the same key and
    neither can ever read a half-written one.
    """
    for _ in range(3):
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = b""
        if len(key) >= 32:
            return key
        if key:  # damaged by hand or by a full disk: replace it; old cookies lapse
            path.unlink(missing_ok=True)
        fresh = secrets.token_bytes(32)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(fresh)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, path)
            return fresh
        except FileExistsError:
            continue  # another process made it first: read theirs
        finally:
            tmp.unlink(missing_ok=True)
    raise RuntimeError(f"could not create the visitor key {path}")
