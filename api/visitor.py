"""The anonymous visitor cookie, issued to every browser that has no valid one.

An ASGI middleware (not a route dependency) so that the studio at ``/ui`` gets the cookie too:
its first page load sets it, and every Gradio event after that carries it. A request that came
without a valid cookie is handed on as if it had carried the fresh one (its ``Cookie`` header is
rewritten), so ``api.deps.caller`` and ``ui.common.principal_of`` see the same visitor on the
very first request as on every later one.
"""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from core.visitor import VISITOR_COOKIE, VISITOR_MAX_AGE_S, VisitorIds

Scope = dict[str, Any]


class VisitorCookieMiddleware:
    def __init__(self, app: Any, visitors: VisitorIds, secure: bool | None) -> None:
        self.app = app
        self.visitors = visitors
        self.secure = secure  # None: Secure when the request came over HTTPS

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # websockets read the cookie their page load was given
            await self.app(scope, receive, send)
            return
        header = _cookie_header(scope)
        if self.visitors.verify(_cookie_value(header, VISITOR_COOKIE)) is not None:
            await self.app(scope, receive, send)
            return
        _, value = self.visitors.new()
        scope = {**scope, "headers": _with_cookie(scope, header, value)}
        secure = self.secure if self.secure is not None else scope.get("scheme") == "https"
        set_cookie = (
            f"{VISITOR_COOKIE}={value}; Max-Age={VISITOR_MAX_AGE_S}; Path=/; HttpOnly; "
            "SameSite=Lax" + ("; Secure" if secure else "")
        ).encode("latin-1")

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"set-cookie", set_cookie)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def install_visitor_cookie(app: Any, settings: Settings, visitors: VisitorIds) -> None:
    app.add_middleware(
        VisitorCookieMiddleware, visitors=visitors, secure=settings.auth.cookie_secure
    )


def _cookie_header(scope: Scope) -> str:
    parts = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"cookie"]
    return "; ".join(parts)


def _cookie_value(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def _with_cookie(scope: Scope, header: str, value: str) -> list[tuple[bytes, bytes]]:
    """The request's headers with the visitor cookie replaced by ``value``."""
    kept = [
        part.strip()
        for part in header.split(";")
        if part.strip() and part.strip().partition("=")[0] != VISITOR_COOKIE
    ]
    cookie = "; ".join([*kept, f"{VISITOR_COOKIE}={value}"]).encode("latin-1")
    others = [(k, v) for k, v in scope.get("headers", []) if k != b"cookie"]
    return [*others, (b"cookie", cookie)]
