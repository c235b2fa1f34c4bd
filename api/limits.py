"""What an API key may do, checked in one place for every route.

``enforce_key`` runs before every API route (``install_limits`` adds it to the app's own
dependencies, so a route added later is covered without doing anything). For a request that
comes with an API key it checks, in this order:

1. the key: unknown, revoked or expired keys are 401 (``AuthService.principal``);
2. the scope the route needs (``required_scope``): 403;
3. the agent: a key limited to some agents used on another one: 403;
4. requests a minute, then for routes that run the model (``generates``) concurrent
   replies and tokens a minute: 429 with ``Retry-After`` and ``x-ratelimit-*``; then the
   token budget of the day or month: 402 saying what was used and the limit.

A refused request never reaches its route, so nothing it sent is stored or metered. Sessions
(a signed-in browser) have every scope and no limits; anonymous callers get what the routes
allow anonymous callers.

A reply that streams holds its key's concurrency slot until the response is over, however it
ends (done, failed, the client went away): ``LimitsMiddleware`` frees it when the ASGI call
returns, and adds the key's ``x-ratelimit-*`` headers to answers that were let through.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from anyio import to_thread
from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import api_key_of, services
from core.errors import AuthError, ScopeError
from core.principal import Principal
from usage.limiter import Admission

# Where the admitted request's slot waits for the middleware: a list the middleware puts in
# the scope, so that inner middleware that copy the scope (``{**scope, ...}``) still share it.
ADMISSION = "anima.admission"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Routes that run the model (or a speech engine): they hold a stream slot and spend tokens.
_GENERATES = re.compile(
    r"^(/v1/(chat/completions|completions|audio/speech|audio/transcriptions)"
    r"|/api/conversations/[^/]+/(messages|regenerate|continue|impersonate|swipes)[^/]*)$"
)
_CHAT = re.compile(r"^(/v1/.*|/api/conversations/.*|/api/agents/[^/]+/conversations)$")
_CONVERSATION = re.compile(r"^/api/conversations/([^/]+)")


def required_scope(method: str, path: str) -> str | None:
    """The scope a key needs for ``method path``, or ``None`` (any key may).

    ``/v1`` and chatting need ``chat``; managing keys needs ``admin``; any other change
    (agents, knowledge bases, voices, fine-tunes, the chain) needs ``manage``; reading
    needs no particular scope.
    """
    if path.startswith("/api/auth/keys"):
        return "admin"
    if _CHAT.match(path):
        return None if method in SAFE_METHODS and path.startswith("/api/") else "chat"
    if method in SAFE_METHODS or path.startswith("/api/auth/"):
        return None
    return "manage"


def generates(method: str, path: str) -> bool:
    return method == "POST" and _GENERATES.match(path) is not None


async def enforce_key(request: Request) -> None:
    """The checks of the module doc, for a request with an API key (others pass)."""
    key = api_key_of(request)
    if not key:
        return
    svc = services(request)
    principal = svc.auth.principal(api_key=key)
    policy = svc.auth.keys.policy(principal.key_id or "")
    if policy is None:  # revoked and gone between the two looks
        raise AuthError("unknown or revoked API key")
    method, path = request.method, request.url.path
    scope = required_scope(method, path)
    if scope is not None and scope not in policy.scopes:
        raise ScopeError(
            f"this API key lacks the {scope!r} scope (it has: {', '.join(sorted(policy.scopes))})"
        )
    if policy.allowed_agents is not None:
        agent_id = await _agent_of(request, principal)
        if agent_id is not None and not policy.allows_agent(agent_id):
            raise ScopeError(f"this API key may not be used with agent {agent_id!r}")
    if generates(method, path) and path.startswith("/api/conversations/"):
        # Paid use goes through /v1, where it is reserved and charged; a key cannot reach a
        # priced agent for free through the conversation routes.
        agent_id = await _agent_of(request, principal)
        if agent_id is not None:
            svc.economy.require_unpriced(agent_id, principal=principal)
    admission = svc.usage.admit(policy, generates=generates(method, path))
    box = request.scope.get(ADMISSION)
    if box is not None:
        box.append(admission)
    else:  # no LimitsMiddleware (an app built without install_limits): free the slot now
        svc.usage.release(admission)


async def _agent_of(request: Request, principal: Principal) -> str | None:
    """The agent a request is about: the path's ``agent_id``, a conversation's agent, or the
    ``model`` (``voice`` for speech) of an OpenAI-style JSON body."""
    agent_id = request.path_params.get("agent_id")
    if agent_id:
        return str(agent_id)
    conversation = _CONVERSATION.match(request.url.path)
    if conversation:
        svc = services(request)
        try:
            view = await to_thread.run_sync(
                partial(svc.chat.get_conversation, conversation.group(1), principal=principal)
            )
        except Exception:  # none, or not the caller's: the route answers 404 or 403
            return None
        return view.agent_id
    if request.url.path.startswith("/v1/") and request.method == "POST":
        if "json" not in request.headers.get("content-type", ""):
            return None
        try:
            body: Any = await request.json()
        except Exception:  # malformed: the route's validation answers
            return None
        if isinstance(body, dict):
            value = body.get("voice") if request.url.path.endswith("/speech") else body.get("model")
            return str(value) if value else None
    return None


class LimitsMiddleware:
    """Frees a request's concurrency slot when its response is over (also on disconnect) and
    adds the key's ``x-ratelimit-*`` headers to what was let through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        box: list[Admission] = []
        scope[ADMISSION] = box

        async def with_headers(message: Message) -> None:
            admission = box[0] if box else None
            if message["type"] == "http.response.start" and admission and admission.headers:
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode())
                    for k, v in admission.headers.items()
                    if k.encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        finally:
            for admission in box:
                scope["app"].state.services.usage.release(admission)


def install_limits(app: FastAPI) -> None:
    """Run ``enforce_key`` before every route included after this call, and free slots."""
    app.router.dependencies.append(Depends(enforce_key))
    app.add_middleware(LimitsMiddleware)
