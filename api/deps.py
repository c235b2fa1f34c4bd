"""FastAPI dependencies: the services built once in ``app.py``, bounded uploads, and the caller
(``Caller``) with the owner check (``AgentOwner``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request, UploadFile

from chain.auth import API_KEY_PREFIX, SESSION_COOKIE
from container import Services
from core.errors import AuthError, UploadTooLargeError
from core.principal import ANONYMOUS, Principal
from core.visitor import VISITOR_COOKIE

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


# ----- Who is calling, and the owner check ------------------------------------------------
# Every route takes the caller, ``principal: Caller``, and passes it to the service, which
# checks it; ``_: AgentOwner`` runs the owner check up front when the agent id is the
# ``{agent_id}`` path parameter. tests/api/test_authorization.py walks every route of the app
# and fails for one that takes neither, unless it is listed in PUBLIC_ROUTES;
# tests/chain/test_ownership_api.py fails for a state-changing ``{agent_id}`` route without
# ``AgentOwner``, unless it is listed in OWNER_CHECK_EXEMPT.

# Routes anyone may call without being identified, with the reason: they read what is public
# by design (agents, their cards and voices, chain state, shared knowledge bases), compute
# without storing anything, or are the sign-in itself.
PUBLIC_ROUTES: dict[str, str] = {
    "GET /": "redirects to the studio UI",
    "GET /api/health": "liveness and queue depth, for monitors",
    # Listing agents, reading one, its card and avatar, chatting with it and starting a chat
    # take the caller: private agents exist only for their owner. What is left here belongs
    # to an agent anyone may use.
    "GET /api/agents/{agent_id}/voice": "an agent's voice settings are part of the agent",
    "GET /api/agents/{agent_id}/voice/sample": "the agent speaks with this voice to everyone",
    "GET /api/agents/{agent_id}/adapters": "which adapter an agent answers with travels with it",
    # Knowledge bases are shared reading: any agent's owner may attach any base.
    "GET /api/knowledge-bases": "knowledge bases are readable by all",
    "GET /api/knowledge-bases/{kb_id}": "knowledge bases are readable by all",
    "GET /api/knowledge-bases/{kb_id}/documents": "knowledge bases are readable by all",
    "GET /api/knowledge-bases/{kb_id}/documents/{document_id}": "knowledge bases are readable",
    "GET /api/knowledge-bases/{kb_id}/search": "knowledge bases are readable by all",
    "GET /api/agents/{agent_id}/knowledge-bases": "which bases an agent answers from is public",
    "GET /api/agents/{agent_id}/knowledge-search": "searches bases that are readable by all",
    # The chain is public.
    "GET /api/chain": "the contract address and chain id",
    "GET /api/agents/{agent_id}/chain": "an agent's token, as anyone can read it on chain",
    "GET /api/agents/{agent_id}/chain/verify": "compares the served card with the chain",
    "GET /api/agents/{agent_id}/chain/anchor": "the message the holder signs; signing is checked",
    "GET /api/nft/{token_id}": "token metadata that marketplaces read",
    "GET /api/nft/{token_id}/image": "the token's image that its metadata links",
    "GET /api/agents/{agent_id}/shares": "an agent's revenue shares, as anyone reads them on chain",
    "GET /api/agents/{agent_id}/shares/holders": "share balances are public on chain",
    "GET /api/agents/{agent_id}/shares/claimable": "claims per snapshot are public on chain",
    "GET /api/agents/{agent_id}/shares/snapshot": "the snapshot transaction anyone may send",
    "GET /api/agents/{agent_id}/revenue": "the agent's account balance and shares, read on chain",
    # Stateless: an answer computed from the request, nothing stored or read but public agents.
    "POST /v1/embeddings": "vectors of the client's texts from the shared embedder; nothing stored",
    "POST /v1/audio/speech": "speech from text; only usage is recorded",
    "POST /v1/audio/transcriptions": "text from speech; only usage is recorded",
    "POST /api/voice/check": "checks an uploaded sample; nothing is stored",
    "GET /api/voice": "which speech engines are loaded",
    # Signing in: the caller is who these routes establish.
    "POST /api/auth/nonce": "starts a sign-in",
    "POST /api/auth/verify": "finishes a sign-in (the signature is the proof)",
    "POST /api/auth/logout": "ends the session named by its own cookie",
    "GET /api/auth/local-wallets": "local wallets' addresses (ANIMA_LOCAL_WALLETS), no keys",
    "POST /api/auth/local-wallets": "creates a password-protected wallet and signs in with it",
    "POST /api/auth/local-wallets/{address}/login": "signs in (the password is the proof)",
    # Fine-tune runs are shown with the agent, like its adapters: progress, scores, errors.
    "GET /api/agents/{agent_id}/finetunes": "an agent's training runs are shown with it",
    "GET /api/agents/{agent_id}/finetunes/{run_id}": "one run's progress and scores",
    "GET /api/agents/{agent_id}/finetunes/{run_id}/metrics": "one run's loss curve",
    # The economy: prices and income are public on chain; balances and spend take the caller.
    "GET /api/economy": "the Payments contract address and fee",
    "GET /api/agents/{agent_id}/price": "what an agent costs is shown to every caller",
    "GET /api/agents/{agent_id}/income": "settled income is public on chain",
}

# State-changing routes with an agent id in the path that anyone may call, with the reason.
OWNER_CHECK_EXEMPT: dict[str, str] = {
    "POST /api/agents/{agent_id}/conversations": "starting a chat does not change the agent",
    "POST /api/agents/{agent_id}/conversations/import": "an imported chat is a new chat with it",
    "POST /api/agents/{agent_id}/shares/claim": "builds a holder's own claim; changes nothing",
    "POST /api/agents/{agent_id}/prompt-preview": "computes a prompt and stores nothing",
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
    """The signed-in wallet behind the session cookie or API key; anonymous otherwise; with
    the browser's visitor id (``core.visitor``) when its cookie is valid.

    An API key that is unknown or revoked is refused (401). A session cookie that expired is
    not: cookies are sent without being asked for, so a stale one just means anonymous.
    """
    principal = _wallet_of(request)
    visitor_id = visitor_of(request)
    return replace(principal, visitor_id=visitor_id) if visitor_id else principal


def visitor_of(request: Request) -> str | None:
    """The browser's anonymous identity from its signed cookie; ``None`` if none or forged."""
    return services(request).visitors.verify(request.cookies.get(VISITOR_COOKIE))


def _wallet_of(request: Request) -> Principal:
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
