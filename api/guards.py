"""What stands between the network and every route: Host allow-list, cross-site check, body caps.

Anima is served to browsers that also have other sites open, so three holes must be closed for
*every* route, Gradio's own under ``/ui`` and routes added later included. That is why these
are ASGI middleware around the whole app, not dependencies of single routers:

* **Host allow-list** (DNS rebinding). A page on ``evil.example`` whose DNS name is re-pointed
  at 127.0.0.1 reaches the app with ``Host: evil.example``; only the names we answer to are
  accepted (``ANIMA_HOST``, ``localhost``, ``127.0.0.1``, ``[::1]`` plus
  ``ANIMA_ALLOWED_HOSTS``). Answer: 400.
* **Cross-site check** (CSRF). A multipart ``POST`` is a "simple request" that any page can
  send without a CORS preflight. A state-changing request (anything but GET, HEAD, OPTIONS)
  that a browser marks as coming from another origin (``Origin``, else ``Sec-Fetch-Site``) is
  refused unless that origin is in ``ANIMA_ALLOWED_ORIGINS``. Same-origin pages (the studio)
  and non-browser clients (curl, the ``openai`` package: they send neither header) pass.
  Answer: 403.
* **Body caps while the body streams in.** A declared ``Content-Length`` over the cap is
  refused before a byte of the body is read; a chunked body is counted as it arrives and
  refused as soon as it passes the cap. Multipart uploads get ``ANIMA_MAX_UPLOAD_MB`` (plus
  room for the multipart framing), everything else ``ANIMA_MAX_REQUEST_MB``; a route that
  needs more registers it with :meth:`BodyLimits.allow`. Answer: 413.

CORS is off unless ``ANIMA_ALLOWED_ORIGINS`` is set. Starlette's ``CORSMiddleware`` is always
installed (with an empty list by default) because Gradio's own CORS layer, which reflects any
origin with credentials when the host is not ``localhost``, stands down when the parent app
configures CORS.

Every refusal uses the OpenAI error body of :mod:`api.errors`, so clients show one shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# What the multipart framing of one upload may add to the file itself.
MULTIPART_OVERHEAD = 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _error(message: str, kind: str, status: int) -> bytes:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


async def _refuse(scope: Scope, send: Send, message: str, kind: str, status: int) -> None:
    """Answer an HTTP request with an error, or close a websocket handshake (policy violation)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = _error(message, kind, status)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def split_host(value: str) -> tuple[str, int | None]:
    """``("example.com", 8080)`` from ``example.com:8080``; IPv6 keeps its brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, _, rest = value.partition(":")
        rest = f":{rest}" if rest else ""
    port = int(rest[1:]) if rest[1:].isdigit() else None
    return name.rstrip("."), port


class HostAllowList:
    """Names the app answers to; anything else is a DNS-rebinding attempt (or a typo)."""

    def __init__(self, names: list[str]) -> None:
        self.any = "*" in names
        exact: set[str] = set()
        suffixes: list[str] = []
        for raw in names:
            name = raw.strip().lower()
            if not name or name == "*":
                continue
            if name.startswith("*."):
                suffixes.append(name[1:])  # ".example.com"
            elif ":" in name and not name.startswith("["):
                exact.add(f"[{name}]")  # a bare IPv6 address from the settings
            else:
                exact.add(name)
        self.exact, self.suffixes = exact, tuple(suffixes)

    @classmethod
    def from_settings(cls, settings: Settings) -> HostAllowList:
        return cls(
            [
                "localhost",
                "127.0.0.1",
                "::1",
                settings.server.host,
                *settings.server.allowed_host_list,
            ]
        )

    def allows(self, host_header: str | None) -> bool:
        if self.any:
            return True
        if not host_header:
            return False
        name, _ = split_host(host_header)
        return name in self.exact or (bool(self.suffixes) and name.endswith(self.suffixes))


def _origin_key(scheme: str, netloc: str) -> tuple[str, int | None] | None:
    name, port = split_host(netloc)
    if not name:
        return None
    return name, port if port is not None else _DEFAULT_PORTS.get(scheme)


def origin_matches_host(origin: str, host_header: str | None) -> bool:
    """True if ``origin`` is this very server: same host name and port as the ``Host``.

    The scheme is not compared: behind a TLS-terminating proxy the app sees ``http`` while the
    page's origin is ``https``; a rebinding attacker cannot forge ``Host`` past the allow-list.
    """
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc or not host_header:
        return False
    theirs = _origin_key(parts.scheme, parts.netloc)
    ours = _origin_key(parts.scheme, host_header)
    if theirs is None or ours is None:
        return False
    if ours[1] is None:  # Host without a port: the default port of the page's scheme
        ours = (ours[0], _DEFAULT_PORTS.get(parts.scheme))
    return theirs == ours


@dataclass
class BodyLimits:
    """The largest body each request may send, decided before the route runs.

    Routes that take bigger bodies than the defaults (say, a document upload) register a
    path pattern: ``limits.allow(r"^/api/knowledge-bases/[^/]+/documents$", n)``; the app
    registers every such route at start-up (``upload_caps`` in ``app.py``).
    """

    request_bytes: int
    upload_bytes: int
    rules: list[tuple[re.Pattern[str], int]] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        return cls(
            request_bytes=settings.server.max_request_bytes,
            upload_bytes=settings.server.max_upload_bytes + MULTIPART_OVERHEAD,
        )

    def allow(self, path_pattern: str, max_bytes: int) -> None:
        """Let requests whose path matches ``path_pattern`` send up to ``max_bytes``."""
        self.rules.append((re.compile(path_pattern), max_bytes))

    def limit_for(self, scope: Scope, headers: Headers) -> tuple[int, str]:
        """The cap for this request and the setting that names it (for the message)."""
        for pattern, limit in self.rules:
            if pattern.search(scope.get("path", "")):
                return limit, "this route's limit"
        kind = headers.get("content-type", "").lower()
        if kind.startswith("multipart/form-data"):
            return self.upload_bytes, "ANIMA_MAX_UPLOAD_MB"
        return self.request_bytes, "ANIMA_MAX_REQUEST_MB"


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """Host allow-list, cross-site check and body caps for one ASGI app (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: HostAllowList,
        allowed_origins: list[str],
        limits: BodyLimits,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        if not self.hosts.allows(host):
            await _refuse(
                scope,
                send,
                f"host {host!r} is not served here; if this is your server's name, add it to "
                "ANIMA_ALLOWED_HOSTS",
                "invalid_host",
                400,
            )
            return
        problem = self._cross_site(scope, headers, host)
        if problem:
            await _refuse(scope, send, problem, "cross_site_request", 403)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, headers)

    def _cross_site(self, scope: Scope, headers: Headers, host: str | None) -> str | None:
        """Why this request must be refused as cross-site, or None if it may pass."""
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None  # reads: the browser's same-origin policy keeps their answers private
        origin = headers.get("origin")
        if origin is not None:
            if origin.rstrip("/").lower() in self.origins:
                return None
            if origin != "null" and origin_matches_host(origin, host):
                return None
            return (
                f"cross-site request refused: a page on {origin} may not change anything here "
                "(allow that origin with ANIMA_ALLOWED_ORIGINS)"
            )
        site = headers.get("sec-fetch-site")
        if site in ("cross-site", "same-site"):
            return (
                "cross-site request refused: the browser marked it as sent by another site "
                "(allow that origin with ANIMA_ALLOWED_ORIGINS)"
            )
        return None  # same-origin, typed by the user, or not a browser at all

    async def _limited(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        limit, setting = self.limits.limit_for(scope, headers)
        message = (
            f"request body is larger than the {limit / 1e6:.1f} MB limit ({setting}); "
            "nothing was stored"
        )
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, send, message, "UploadTooLargeError", 413)
            return

        received = 0
        started = False
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        # Answer now, while the client is still sending; the route sees a
                        # disconnect and whatever it answers is dropped.
                        await _refuse(scope, send, message, "UploadTooLargeError", 413)
                        raise _TooLarge
                    return {"type": "http.disconnect"}
            return event

        async def tracked_send(event: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # our 413 went out instead
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            return
        except Exception:
            if refused:
                return  # the route failed on the cut-off body; the client has its 413
            raise


def install_guards(app: Any, settings: Settings) -> BodyLimits:
    """Wrap ``app`` (FastAPI/Starlette, before it starts) in the guards; returns the body limits.

    The limits object is also kept on ``app.state.body_limits`` so that a feature can raise the
    cap for its own upload route (:meth:`BodyLimits.allow`).
    """
    limits = BodyLimits.from_settings(settings)
    origins = settings.server.allowed_origin_list
    # Innermost first: CORS answers preflights only for the allowed origins.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=bool(origins),
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(
        GuardMiddleware,
        hosts=HostAllowList.from_settings(settings),
        allowed_origins=origins,
        limits=limits,
    )
    app.state.body_limits = limits
    return limits
