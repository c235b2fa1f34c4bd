"""API keys: what a key may do (scopes, agents, expiry) and how much (rates, streams, budget).

A key acts for the wallet that created it, within its scopes: ``chat`` (talk to agents, the
``/v1`` API), ``manage`` (change agents, knowledge bases, voices, fine-tunes, the chain) and
``admin`` (manage keys). Only the key's SHA-256 is stored and the key is shown once.

Every request with a key needs its policy, so policies are cached in memory by key hash for
``CACHE_TTL_S``; revoking or changing a key drops it from this process's cache at once (other
processes see the change within the TTL). The limits themselves are counted in ``usage``.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select

from chain.records import ApiKeyRecord, utcnow
from core.db import Database, UTCDateTime
from core.errors import AuthError, NotFoundError, ValidationError, describe_validation_error
from core.principal import Principal

API_KEY_PREFIX = "anima_"
SCOPES = ("chat", "manage", "admin")
Scope = Literal["chat", "manage", "admin"]
Period = Literal["day", "month"]
CACHE_TTL_S = 10.0


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


INT32 = 2**31 - 1
INT64 = 2**63 - 1


class KeyLimits(BaseModel):
    """What a key may do and how much; ``None`` is "no limit" (agents: every agent)."""

    scopes: list[Scope] = Field(default_factory=lambda: list(SCOPES), min_length=1)
    allowed_agents: list[str] | None = Field(
        default=None, max_length=1000, description="Agent ids the key may use; null: all."
    )
    expires_at: UTCDateTime | None = None
    # Bounded by their columns (32-bit, the budget 64-bit): a larger number is a 422, not a
    # database error.
    rpm: int | None = Field(default=None, ge=1, le=INT32, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, le=INT32, description="Tokens per minute.")
    max_streams: int | None = Field(default=None, ge=1, le=INT32, description="Concurrent replies.")
    budget_tokens: int | None = Field(
        default=None, ge=1, le=INT64, description="Tokens per period."
    )
    budget_period: Period = "month"

    @field_validator("scopes")
    @classmethod
    def _unique(cls, value: list[Scope]) -> list[Scope]:
        return [s for s in SCOPES if s in value]


class ApiKeyView(BaseModel):
    id: str
    prefix: str
    name: str
    address: str
    created_at: UTCDateTime
    last_used_at: UTCDateTime | None
    revoked_at: UTCDateTime | None
    limits: KeyLimits = Field(default_factory=KeyLimits)


class NewApiKey(ApiKeyView):
    key: str  # shown once; only its hash is kept


@dataclass(frozen=True)
class KeyPolicy:
    """A key's rules as every request reads them (from the cache, not the database)."""

    id: str
    address: str
    scopes: frozenset[str]
    allowed_agents: frozenset[str] | None
    expires_at: datetime | None
    revoked: bool
    rpm: int | None
    tpm: int | None
    max_streams: int | None
    budget_tokens: int | None
    budget_period: str

    def allows_agent(self, agent_id: str) -> bool:
        return self.allowed_agents is None or agent_id in self.allowed_agents

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at


def _limits(row: ApiKeyRecord) -> KeyLimits:
    return KeyLimits(
        scopes=[s for s in (row.scopes or "").split(",") if s in SCOPES] or ["chat"],
        allowed_agents=row.allowed_agents,
        expires_at=row.expires_at,
        rpm=row.rpm_limit,
        tpm=row.tpm_limit,
        max_streams=row.max_streams,
        budget_tokens=row.budget_tokens,
        budget_period=row.budget_period or "month",
    )


def _apply(row: ApiKeyRecord, limits: KeyLimits) -> None:
    row.scopes = ",".join(limits.scopes)
    row.allowed_agents = None if limits.allowed_agents is None else list(limits.allowed_agents)
    row.expires_at = limits.expires_at
    row.rpm_limit, row.tpm_limit, row.max_streams = limits.rpm, limits.tpm, limits.max_streams
    row.budget_tokens, row.budget_period = limits.budget_tokens, limits.budget_period


def key_view(row: ApiKeyRecord) -> ApiKeyView:
    return ApiKeyView(
        id=row.id,
        prefix=row.prefix,
        name=row.name,
        address=row.address,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        limits=_limits(row),
    )


def _policy(row: ApiKeyRecord) -> KeyPolicy:
    limits = _limits(row)
    return KeyPolicy(
        id=row.id,
        address=row.address,
        scopes=frozenset(limits.scopes),
        allowed_agents=None if limits.allowed_agents is None else frozenset(limits.allowed_agents),
        expires_at=limits.expires_at,
        revoked=row.revoked_at is not None,
        rpm=limits.rpm,
        tpm=limits.tpm,
        max_streams=limits.max_streams,
        budget_tokens=limits.budget_tokens,
        budget_period=limits.budget_period,
    )


class ApiKeys:
    """Creating, listing, changing and revoking keys, and the cached key -> policy lookup."""

    def __init__(self, db: Database, hash_key: object) -> None:
        self.db = db
        self._hash = hash_key  # sha256_hex, passed in so both modules hash alike
        self._lock = threading.Lock()
        self._by_hash: dict[str, tuple[float, KeyPolicy | None]] = {}
        self._by_id: dict[str, KeyPolicy] = {}
        self._last_used: dict[str, float] = {}

    # ----- managing keys (the owner, signed in or with an admin key) -------------------
    def create(self, name: str, limits: KeyLimits | None, *, principal: Principal) -> NewApiKey:
        """A key acting for the caller's address; the plain key is returned only here."""
        if principal.address is None or principal.via not in ("session", "api_key"):
            raise AuthError("sign in with your wallet to create an API key")
        limits = limits or KeyLimits()
        if principal.key_id is not None:
            # A key cannot mint a key stronger than itself.
            parent = self.policy(principal.key_id)
            if parent is not None and not set(limits.scopes) <= parent.scopes:
                raise ValidationError("a key cannot create a key with scopes it lacks itself")
        self._check_expiry(limits)
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        record = ApiKeyRecord(
            id=uuid.uuid4().hex,
            key_hash=self._hash(key),
            prefix=key[:12],
            address=principal.address,
            name=name.strip()[:100],
            created_at=utcnow(),
        )
        _apply(record, limits)
        with self.db.session() as s:
            s.add(record)
        return NewApiKey(**key_view(record).model_dump(), key=key)

    def list(self, *, principal: Principal) -> list[ApiKeyView]:
        if principal.address is None:
            raise AuthError("sign in to see your API keys")
        with self.db.session() as s:
            rows = s.scalars(
                select(ApiKeyRecord)
                .where(ApiKeyRecord.address == principal.address)
                .order_by(ApiKeyRecord.created_at)
            ).all()
            return [key_view(r) for r in rows]

    def get(self, key_id: str, *, principal: Principal) -> ApiKeyView:
        with self.db.session() as s:
            return key_view(self._own_row(s, key_id, principal))

    def update(self, key_id: str, changes: dict, *, principal: Principal) -> ApiKeyView:
        """Change some of a key's limits (the fields given; ``None`` lifts a limit)."""
        with self.db.session() as s:
            row = self._own_row(s, key_id, principal)
            if row.revoked_at is not None:
                raise ValidationError("this key is revoked; create a new one")
            name = changes.pop("name", None)
            try:
                merged = KeyLimits.model_validate({**_limits(row).model_dump(), **changes})
            except PydanticValidationError as exc:
                raise ValidationError(describe_validation_error(exc)) from exc
            if "expires_at" in changes:
                self._check_expiry(merged)
            _apply(row, merged)
            if name is not None:
                row.name = str(name).strip()[:100]
            s.flush()
            view = key_view(row)
        self._forget(key_id)
        return view

    def revoke(self, key_id: str, *, principal: Principal) -> None:
        with self.db.session() as s:
            row = self._own_row(s, key_id, principal)
            row.revoked_at = row.revoked_at or utcnow()
        self._forget(key_id)

    def _own_row(self, s: object, key_id: str, principal: Principal) -> ApiKeyRecord:
        if principal.address is None:
            raise AuthError("sign in to manage your API keys")
        row = s.get(ApiKeyRecord, key_id)  # type: ignore[attr-defined]
        if row is None or not principal.is_address(row.address):
            raise NotFoundError(f"no API key {key_id!r} of yours")
        return row

    @staticmethod
    def _check_expiry(limits: KeyLimits) -> None:
        if limits.expires_at is not None and limits.expires_at <= utcnow():
            raise ValidationError("expires_at is in the past")

    # ----- using keys (every request) --------------------------------------------------
    def principal_for(self, key: str) -> Principal:
        """The caller behind a key: unknown, revoked and expired keys are all 401."""
        policy = self._lookup(self._hash(key))
        if policy is None or policy.revoked:
            raise AuthError("unknown or revoked API key")
        if policy.expired():
            raise AuthError("this API key expired; create a new one")
        self._touch(policy.id)
        return Principal(address=policy.address, via="api_key", key_id=policy.id)

    def policy(self, key_id: str) -> KeyPolicy | None:
        """The rules of key ``key_id`` (cached: the caller was resolved moments ago)."""
        with self._lock:
            found = self._by_id.get(key_id)
        if found is not None:
            return found
        with self.db.session() as s:
            row = s.get(ApiKeyRecord, key_id)
            return self._remember(row.key_hash, _policy(row)) if row is not None else None

    def _lookup(self, key_hash: str) -> KeyPolicy | None:
        now = time.monotonic()
        with self._lock:
            cached = self._by_hash.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.db.session() as s:
            row = s.scalars(select(ApiKeyRecord).where(ApiKeyRecord.key_hash == key_hash)).first()
            policy = _policy(row) if row is not None else None
        return self._remember(key_hash, policy)

    def _remember(self, key_hash: str, policy: KeyPolicy | None) -> KeyPolicy | None:
        with self._lock:
            if len(self._by_hash) > 10_000:  # unknown keys tried at random must not pile up
                self._by_hash.clear()
            self._by_hash[key_hash] = (time.monotonic() + CACHE_TTL_S, policy)
            if policy is not None:
                self._by_id[policy.id] = policy
        return policy

    def _forget(self, key_id: str) -> None:
        with self._lock:
            self._by_id.pop(key_id, None)
            for key_hash, (_, policy) in list(self._by_hash.items()):
                if policy is not None and policy.id == key_id:
                    del self._by_hash[key_hash]

    def _touch(self, key_id: str) -> None:
        """``last_used_at``, written at most once a minute per key."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_used.get(key_id, -1e9) < 60:
                return
            self._last_used[key_id] = now
        with self.db.session() as s:
            row = s.get(ApiKeyRecord, key_id)
            if row is not None:
                row.last_used_at = utcnow()
