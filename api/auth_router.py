"""``/api/auth``: Sign-In with Ethereum, sessions, local wallets and API keys.

Sign-in in three calls: ``POST /api/auth/nonce`` (with your address, it returns the EIP-4361
message to sign), sign it with the wallet (``personal_sign``), ``POST /api/auth/verify`` with
the message and signature: the answer sets the ``anima_session`` cookie (HttpOnly,
SameSite=Lax), and the chats this browser started before signing in (its ``anima_visitor``
cookie) move to the wallet, which then reaches them from any browser. API clients then
create an API key and send it as ``X-API-Key`` (or ``Authorization: Bearer anima_...``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field

from api.deps import Caller, services, visitor_of
from api.errors import GUARD_ERRORS, error_responses
from chain.api_keys import INT32, INT64, KeyLimits
from chain.auth import SESSION_COOKIE, ApiKeyView, NewApiKey, NonceView, SessionGrant, SessionView
from container import Services
from usage.service import KeyUsage

router = APIRouter(
    prefix="/api/auth", tags=["auth"], responses=error_responses(*GUARD_ERRORS, 401, 404, 409, 503)
)
Svc = Annotated[Services, Depends(services)]


class NonceRequest(BaseModel):
    address: str | None = Field(
        default=None, description="Your address: the answer then holds the message to sign."
    )


class VerifyRequest(BaseModel):
    message: str = Field(max_length=4000, description="The EIP-4361 message, exactly as signed.")
    signature: str = Field(max_length=1000, description="0x-hex personal_sign signature.")


class PasswordRequest(BaseModel):
    password: str = Field(min_length=1, max_length=1000)


class SignedIn(SessionView):
    conversations_moved: int = Field(
        default=0,
        description="Chats this browser started before signing in, now the wallet's own.",
    )


class KeyRequest(KeyLimits):
    """A new key: a name, and its scopes and limits (default: every scope, no limit)."""

    name: str = Field(default="", max_length=100)


class KeyChange(BaseModel):
    """The limits to change; a field left out stays, ``null`` lifts that limit."""

    model_config = {"extra": "forbid"}

    name: str | None = Field(default=None, max_length=100)
    scopes: list[str] | None = None
    allowed_agents: list[str] | None = None
    expires_at: str | None = None
    rpm: int | None = Field(default=None, ge=1, le=INT32)
    tpm: int | None = Field(default=None, ge=1, le=INT32)
    max_streams: int | None = Field(default=None, ge=1, le=INT32)
    budget_tokens: int | None = Field(default=None, ge=1, le=INT64)
    budget_period: str | None = None


class KeyDetail(ApiKeyView):
    usage: KeyUsage


def _site(request: Request) -> tuple[str, str]:
    """(domain, uri) a sign-in message must name: this site as the browser reached it."""
    host = request.headers.get("host") or request.url.netloc
    return host, f"{request.url.scheme}://{host}"


def _open_session(svc: Services, request: Request, response: Response, grant: SessionGrant) -> None:
    secure = svc.settings.auth.cookie_secure
    if secure is None:
        secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        grant.token,
        max_age=grant.max_age_s,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )


def _adopt_visitor_chats(svc: Services, request: Request, grant: SessionGrant) -> SignedIn:
    """The sign-in's answer, after the chats this browser started anonymously move to the
    wallet (so they follow it to any browser)."""
    moved = 0
    visitor_id = visitor_of(request)
    if grant.view.address and visitor_id:
        signed_in = replace(svc.auth.principal(session_token=grant.token), visitor_id=visitor_id)
        moved = svc.chat.adopt_visitor_conversations(principal=signed_in)
    return SignedIn(**grant.view.model_dump(), conversations_moved=moved)


@router.post("/nonce", response_model=NonceView)
def nonce(svc: Svc, request: Request, body: NonceRequest | None = None) -> NonceView:
    """A single-use nonce (valid ANIMA_AUTH_NONCE_TTL_S) and, given an address, the message."""
    domain, uri = _site(request)
    return svc.auth.issue_nonce(domain, uri, body.address if body else None)


@router.post("/verify", response_model=SignedIn)
def verify(svc: Svc, request: Request, response: Response, body: VerifyRequest) -> SignedIn:
    """Check the signed message (domain, chain id, nonce, expiry, signature); sign in."""
    grant = svc.auth.verify(body.message, body.signature, _site(request)[0])
    _open_session(svc, request, response, grant)
    return _adopt_visitor_chats(svc, request, grant)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(svc: Svc, request: Request) -> Response:
    svc.auth.logout(request.cookies.get(SESSION_COOKIE))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=SessionView)
def me(svc: Svc, principal: Caller) -> SessionView:
    """Who this request is: a session's address, an API key's address, or anonymous."""
    return svc.auth.session_view(principal=principal)


@router.get("/local-wallets", response_model=list[str])
def local_wallets(svc: Svc) -> list[str]:
    """Addresses of the encrypted local wallets on this machine."""
    return svc.auth.wallets.addresses() if svc.settings.auth.local_wallets else []


@router.post("/local-wallets", response_model=SignedIn, status_code=status.HTTP_201_CREATED)
def create_local_wallet(
    svc: Svc, request: Request, response: Response, body: PasswordRequest
) -> SignedIn:
    """A new wallet encrypted with the password (kept in <data_dir>/wallets); signs you in."""
    domain, uri = _site(request)
    grant = svc.auth.create_local_wallet(body.password, domain, uri)
    _open_session(svc, request, response, grant)
    return _adopt_visitor_chats(svc, request, grant)


@router.post("/local-wallets/{address}/login", response_model=SignedIn)
def local_login(
    svc: Svc, request: Request, response: Response, address: str, body: PasswordRequest
) -> SignedIn:
    """Unlock a local wallet and sign in with it (its key then signs your card updates)."""
    domain, uri = _site(request)
    grant = svc.auth.local_sign_in(address, body.password, domain, uri)
    _open_session(svc, request, response, grant)
    if grant.view.address:
        # Cards edited while signed out are anchored now that the holder's key can sign them.
        signed_in = svc.auth.principal(session_token=grant.token)
        svc.chain.reconcile_anchors(grant.view.address, principal=signed_in)
    return _adopt_visitor_chats(svc, request, grant)


@router.post("/keys", response_model=NewApiKey, status_code=status.HTTP_201_CREATED)
def create_key(svc: Svc, principal: Caller, body: KeyRequest | None = None) -> NewApiKey:
    """An API key acting for your address. The key is in this answer only: store it."""
    body = body or KeyRequest()
    limits = KeyLimits.model_validate(body.model_dump(exclude={"name"}))
    return svc.auth.create_api_key(body.name, limits, principal=principal)


@router.get("/keys", response_model=list[ApiKeyView])
def list_keys(svc: Svc, principal: Caller) -> list[ApiKeyView]:
    return svc.auth.list_api_keys(principal=principal)


@router.get("/keys/{key_id}", response_model=KeyDetail)
def get_key(svc: Svc, principal: Caller, key_id: str) -> KeyDetail:
    """A key's limits, its use this minute and period, and what is left of each."""
    view = svc.auth.keys.get(key_id, principal=principal)
    return KeyDetail(**view.model_dump(), usage=svc.usage.key_usage(key_id, principal=principal))


@router.patch("/keys/{key_id}", response_model=ApiKeyView)
def update_key(svc: Svc, principal: Caller, key_id: str, body: KeyChange) -> ApiKeyView:
    """Change a key's name, scopes or limits (only the fields sent)."""
    changes = body.model_dump(exclude_unset=True)
    return svc.auth.keys.update(key_id, changes, principal=principal)


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(svc: Svc, principal: Caller, key_id: str) -> Response:
    svc.auth.revoke_api_key(key_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
