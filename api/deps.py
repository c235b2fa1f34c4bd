"""FastAPI dependencies: the services built once in ``app.py``, bounded uploads, and the caller
(``Caller``) with the owner check (``AgentOwner``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, UploadFile

from chain.auth import API_KEY_PREFIX, SESSION_COOKIE
from container import Services
from core.errors import AuthError, UploadTooLargeError
from core.principal import ANONYMOUS, Principal

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


# ----- On-chain identity (issue 11): who is calling, and the owner check -------------------
# Every route that changes an agent, or something that belongs to an agent, takes
# ``_: AgentOwner`` (when the agent id is the ``{agent_id}`` path parameter) or calls
# ``svc.chain.require_owner(principal, agent_id)`` with ``principal: Caller`` (when the id
# comes from the body). tests/api/test_ownership_api.py fails for any state-changing route
# with ``{agent_id}`` in its path that has neither, unless it is listed in OWNER_CHECK_EXEMPT.

# State-changing routes with an agent id in the path that anyone may call, with the reason.
OWNER_CHECK_EXEMPT: dict[str, str] = {
    "POST /api/agents/{agent_id}/conversations": "starting a chat does not change the agent",
}


def api_key_of(request: Request) -> str | None:
    """An API key from ``X-API-Key`` or ``Authorization: Bearer anima_...``.

    Other bearer tokens are ignored: OpenAI clients send one (often a dummy) with every call.
    """
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip().startswith(API_KEY_PREFIX):
        return value.strip()
    return None


def caller(request: Request) -> Principal:
    """The signed-in wallet behind the session cookie or API key; anonymous otherwise.

    An API key that is unknown or revoked is refused (401). A session cookie that expired is
    not: cookies are sent without being asked for, so a stale one just means anonymous.
    """
    svc = services(request)
    key = api_key_of(request)
    if key:
        return svc.auth.principal(api_key=key)
    try:
        return svc.auth.principal(session_token=request.cookies.get(SESSION_COOKIE))
    except AuthError:
        return ANONYMOUS


Caller = Annotated[Principal, Depends(caller)]


def agent_owner(request: Request, agent_id: str, principal: Caller) -> Principal:
    """Allow the request only if ``principal`` may change agent ``agent_id`` (path param)."""
    services(request).chain.require_owner(principal, agent_id)
    return principal


AgentOwner = Annotated[Principal, Depends(agent_owner)]
