"""Sign-In with Ethereum (EIP-4361), sessions and API keys: who is calling.

A wallet proves it holds an address by signing a SIWE message that names this site (domain),
this chain (chain id), a nonce we issued and an expiry. The nonce is single-use and expires
(``ANIMA_AUTH_NONCE_TTL_S``): it is consumed in one conditional UPDATE, so a replayed message
is refused even when two arrive at once. A verified message opens a session: a random cookie
whose SHA-256 is the session row's key. API keys (``anima_...``) act for the address that
created them; only their SHA-256 is stored, and the key is shown once.

Browser wallets sign in the browser; a local wallet (encrypted keystore, ``chain.wallets``)
signs the very same SIWE message on the server and goes through the same ``verify``, so the
two paths cannot disagree. Cross-site requests are refused before they get here (the
hardening middleware's Host and Origin checks), which is why the cookie can be SameSite=Lax.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel
from sqlalchemy import delete, update

from chain.api_keys import API_KEY_PREFIX, ApiKeys, ApiKeyView, KeyLimits, NewApiKey
from chain.records import NonceRecord, SessionRecord, utcnow
from chain.wallets import LocalWallets, Signers
from core.db import Database, UTCDateTime
from core.errors import AuthError, ValidationError
from core.principal import ANONYMOUS, Principal
from core.settings import Settings

with warnings.catch_warnings():  # abnf 2.8 warns about redefined core rules on import
    warnings.simplefilter("ignore")
    from siwe import SiweMessage

log = logging.getLogger(__name__)

SESSION_COOKIE = "anima_session"
STATEMENT = "Sign in to Anima. This costs nothing and sends no transaction."


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NonceView(BaseModel):
    nonce: str
    expires_at: UTCDateTime
    chain_id: int
    domain: str
    uri: str
    # The full EIP-4361 text to sign, when the caller named its address.
    message: str | None = None


class SessionView(BaseModel):
    address: str | None
    via: str
    wallet: str | None = None
    chain_id: int | None = None
    expires_at: UTCDateTime | None = None


@dataclass(frozen=True)
class SessionGrant:
    """A new session: ``token`` goes into the cookie and nowhere else."""

    token: str
    view: SessionView
    max_age_s: int


class AuthService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        chain_id: Any,
        wallets: LocalWallets,
        signers: Signers,
    ) -> None:
        """``chain_id`` is a callable returning the app's chain id (known once the chain is)."""
        self.settings = settings
        self.db = db
        self._chain_id = chain_id
        self.wallets = wallets
        self.signers = signers
        self.keys = ApiKeys(db, sha256_hex)  # scoped keys with limits (chain/api_keys.py)

    @property
    def chain_id(self) -> int:
        return int(self._chain_id())

    # ----- SIWE ---------------------------------------------------------------------------
    def issue_nonce(self, domain: str, uri: str, address: str | None = None) -> NonceView:
        """A fresh single-use nonce (and the message to sign when ``address`` is given)."""
        if address is not None and not is_address(address):
            raise ValidationError(f"{address!r} is not an Ethereum address")
        nonce = secrets.token_hex(16)
        now = utcnow()
        expires = now + timedelta(seconds=self.settings.auth.nonce_ttl_s)
        with self.db.session() as s:
            s.execute(delete(NonceRecord).where(NonceRecord.expires_at < now - timedelta(days=1)))
            s.add(NonceRecord(nonce=nonce, address=address, created_at=now, expires_at=expires))
        view = NonceView(
            nonce=nonce, expires_at=expires, chain_id=self.chain_id, domain=domain, uri=uri
        )
        if address is not None:
            view.message = self.build_message(
                to_checksum_address(address), nonce, domain, uri, now, expires
            )
        return view

    def build_message(
        self,
        address: str,
        nonce: str,
        domain: str,
        uri: str,
        issued_at: datetime,
        expires_at: datetime,
        chain_id: int | None = None,
    ) -> str:
        return SiweMessage(
            domain=domain,
            address=to_checksum_address(address),
            statement=STATEMENT,
            uri=uri,
            version="1",
            chain_id=self.chain_id if chain_id is None else chain_id,
            nonce=nonce,
            issued_at=_iso(issued_at),
            expiration_time=_iso(expires_at),
        ).prepare_message()

    def verify(
        self, message: str, signature: str, domain: str, wallet: str = "browser"
    ) -> SessionGrant:
        """Check a signed SIWE message; on success consume its nonce and open a session.

        Each refusal says why (malformed, other site, wrong chain, expired, bad signature,
        replayed), because the person signing in needs to know what to fix.
        """
        try:
            parsed = SiweMessage.from_message(message)
        except Exception as exc:
            raise AuthError(f"not a valid EIP-4361 sign-in message: {exc}") from exc
        if parsed.domain != domain:
            raise AuthError(f"this message signs in to {parsed.domain!r}, not {domain!r}")
        if parsed.chain_id != self.chain_id:
            raise AuthError(
                f"wrong chain id {parsed.chain_id}: this app signs in on chain {self.chain_id}"
            )
        now = utcnow()
        if parsed.expiration_time is not None and now >= _aware(parsed.expiration_time._datetime):
            raise AuthError("the sign-in message expired; request a new nonce")
        if parsed.not_before is not None and now < _aware(parsed.not_before._datetime):
            raise AuthError("the sign-in message is not valid yet")
        try:
            signer = Account.recover_message(encode_defunct(text=message), signature=signature)
        except Exception as exc:
            raise AuthError("the signature is malformed") from exc
        if signer.lower() != parsed.address.lower():
            raise AuthError("the signature does not match the message's address")
        self._consume_nonce(parsed.nonce, now)
        token = secrets.token_urlsafe(32)
        expires = now + timedelta(seconds=self.settings.auth.session_ttl_s)
        address = to_checksum_address(parsed.address)
        with self.db.session() as s:
            s.add(
                SessionRecord(
                    id=sha256_hex(token),
                    address=address,
                    chain_id=parsed.chain_id,
                    wallet=wallet,
                    created_at=now,
                    expires_at=expires,
                )
            )
        log.info("signed in %s (%s wallet)", address, wallet)
        view = SessionView(
            address=address,
            via="session",
            wallet=wallet,
            chain_id=parsed.chain_id,
            expires_at=expires,
        )
        return SessionGrant(token=token, view=view, max_age_s=self.settings.auth.session_ttl_s)

    def _consume_nonce(self, nonce: str, now: datetime) -> None:
        with self.db.session() as s:
            used = s.execute(
                update(NonceRecord)
                .where(
                    NonceRecord.nonce == nonce,
                    NonceRecord.used_at.is_(None),
                    NonceRecord.expires_at > now,
                )
                .values(used_at=now)
            )
            if used.rowcount == 1:
                return
            row = s.get(NonceRecord, nonce)
        if row is None:
            raise AuthError("unknown nonce: request one from /api/auth/nonce")
        if row.used_at is not None:
            raise AuthError("this sign-in message was already used (replayed); sign a new one")
        raise AuthError("the sign-in nonce expired; request a new one")

    # ----- local wallets ------------------------------------------------------------------
    def create_local_wallet(self, password: str, domain: str, uri: str) -> SessionGrant:
        self._require_local_wallets()
        address = self.wallets.create(password)
        return self.local_sign_in(address, password, domain, uri)

    def local_sign_in(self, address: str, password: str, domain: str, uri: str) -> SessionGrant:
        """Unlock a local wallet, sign a SIWE message with it here, and verify it like any."""
        self._require_local_wallets()
        account = self.wallets.unlock(address, password)
        nonce = self.issue_nonce(domain, uri, account.address)
        assert nonce.message is not None
        signature = account.sign_message(encode_defunct(text=nonce.message)).signature.hex()
        grant = self.verify(nonce.message, "0x" + signature.removeprefix("0x"), domain, "local")
        self.signers.add(sha256_hex(grant.token), account)
        return grant

    def _require_local_wallets(self) -> None:
        if not self.settings.auth.local_wallets:
            raise AuthError("local wallets are turned off here (ANIMA_LOCAL_WALLETS=false)")

    # ----- sessions and keys --------------------------------------------------------------
    def principal(self, session_token: str | None = None, api_key: str | None = None) -> Principal:
        """The caller behind a cookie or an API key (an API key wins; neither: anonymous).

        A presented but unknown, expired or revoked credential is an error (401), never a
        silent downgrade to anonymous: the client should learn its key stopped working.
        """
        if api_key:
            return self._principal_for_key(api_key)
        if session_token:
            session_id = sha256_hex(session_token)
            with self.db.session() as s:
                row = s.get(SessionRecord, session_id)
                if row is None or _aware(row.expires_at) <= utcnow():
                    if row is not None:
                        s.delete(row)
                    self.signers.drop(session_id)
                    raise AuthError("your session expired or was signed out; sign in again")
                return Principal(address=row.address, via="session", session_id=session_id)
        return ANONYMOUS

    def session_view(self, *, principal: Principal) -> SessionView:
        if principal.session_id is None:
            return SessionView(address=principal.address, via=principal.via)
        with self.db.session() as s:
            row = s.get(SessionRecord, principal.session_id)
            if row is None:
                return SessionView(address=None, via="anonymous")
            return SessionView(
                address=row.address,
                via="session",
                wallet=row.wallet,
                chain_id=row.chain_id,
                expires_at=row.expires_at,
            )

    def has_local_signer(self, *, principal: Principal) -> bool:
        return (
            principal.session_id is not None
            and self.signers.for_address(principal.address) is not None
        )

    def logout(self, session_token: str | None) -> None:
        if not session_token:
            return
        session_id = sha256_hex(session_token)
        self.signers.drop(session_id)
        with self.db.session() as s:
            s.execute(delete(SessionRecord).where(SessionRecord.id == session_id))

    # The key methods other code has called since keys existed; ``self.keys`` has the rest.
    def create_api_key(
        self, name: str = "", limits: KeyLimits | None = None, *, principal: Principal
    ) -> NewApiKey:
        """A key acting for the signed-in address; the plain key is returned only here."""
        return self.keys.create(name, limits, principal=principal)

    def list_api_keys(self, *, principal: Principal) -> list[ApiKeyView]:
        return self.keys.list(principal=principal)

    def revoke_api_key(self, key_id: str, *, principal: Principal) -> None:
        self.keys.revoke(key_id, principal=principal)

    def _principal_for_key(self, key: str) -> Principal:
        return self.keys.principal_for(key)


__all__ = ["API_KEY_PREFIX", "SESSION_COOKIE", "ApiKeyView", "AuthService", "NewApiKey"]
