"""Usage metering: what each request used, who asked, of which agent; and the per-key limits.

Recording is one call. A route or service that starts a reply calls
``usage.track(reply, principal=..., agent_id=..., route=...)``: when the reply ends (done,
failed mid-way, or the client left) its ``Usage`` becomes one record. Work without a
``ReplyStream`` (speech) calls ``usage.record(...)`` with what it measured. Records go to the
:class:`~usage.writer.BatchWriter` (no database write on the request's thread) and into the
key's running totals at once, so budgets see a reply's tokens before they are written.

Limits (``admit``/``release``) live here too because they read the same totals; the API calls
them from ``api/limits.py``, the one place that decides which route needs what.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func, or_, select

from chain.api_keys import KeyPolicy
from core.db import Database, UTCDateTime
from core.errors import AuthError, NotFoundError, ValidationError
from core.principal import Principal
from core.settings import Settings
from usage.limiter import Admission, Limiter
from usage.records import UsageRecord
from usage.writer import BatchWriter, Row

log = logging.getLogger(__name__)

GroupBy = Literal["day", "agent", "key"]


class KeyUsage(BaseModel):
    """A key's use now and what is left (``None``: that limit is not set)."""

    requests_this_minute: int
    tokens_this_minute: int
    open_streams: int
    period: str
    period_start: UTCDateTime
    period_end: UTCDateTime
    tokens_this_period: int
    remaining_requests_this_minute: int | None
    remaining_tokens_this_minute: int | None
    remaining_streams: int | None
    remaining_budget: int | None


class UsageRow(BaseModel):
    group: str | None  # the day (YYYY-MM-DD), agent id or key id
    requests: int
    users: int  # distinct callers (wallets, visitors; anonymous callers count as one)
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    audio_seconds: float


class UsageReport(BaseModel):
    group_by: GroupBy
    rows: list[UsageRow]


@dataclass(frozen=True)
class UsageQuery:
    group_by: GroupBy = "day"
    since: datetime | None = None
    until: datetime | None = None
    agent_id: str | None = None
    key_id: str | None = None


class UsageService:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        owned_agents: Callable[[Principal], list[str]],
        key_policy: Callable[[str], KeyPolicy | None],
    ) -> None:
        """``owned_agents(principal)``: the ids of the agents the caller owns;
        ``key_policy(key_id)``: a key's rules (``AuthService.keys.policy``)."""
        self.settings = settings
        self.db = db
        self.enabled = settings.auth.usage_metering
        self._owned_agents = owned_agents
        self._key_policy = key_policy
        self.writer = BatchWriter(db, settings.auth.usage_flush_s)
        self.limiter = Limiter(self._tokens_since)

    # ----- limits ---------------------------------------------------------------------
    def admit(self, policy: KeyPolicy, *, generates: bool) -> Admission:
        return self.limiter.admit(policy, generates=generates)

    def release(self, admission: Admission) -> None:
        self.limiter.release(admission)

    def key_usage(self, key_id: str, *, principal: Principal) -> KeyUsage:
        """Key ``key_id``'s use this minute and period, and what is left (its owner only)."""
        policy = self._own_key(key_id, principal)
        c = self.limiter.counters(policy)

        def left(limit: int | None, used: int) -> int | None:
            return None if limit is None else max(0, limit - used)

        return KeyUsage(
            requests_this_minute=c.requests_this_minute,
            tokens_this_minute=c.tokens_this_minute,
            open_streams=c.open_streams,
            period=policy.budget_period,
            period_start=c.period_start,
            period_end=c.period_end,
            tokens_this_period=c.period_tokens,
            remaining_requests_this_minute=left(policy.rpm, c.requests_this_minute),
            remaining_tokens_this_minute=left(policy.tpm, c.tokens_this_minute),
            remaining_streams=left(policy.max_streams, c.open_streams),
            remaining_budget=left(policy.budget_tokens, c.period_tokens),
        )

    # ----- recording ------------------------------------------------------------------
    def track(
        self,
        reply: Any,
        *,
        principal: Principal,
        agent_id: str | None,
        route: str,
        request_id: str | None = None,
    ) -> None:
        """Record ``reply`` (a ``ReplyStream``) when it ends: its tokens, latency, outcome.
        ``request_id`` names the record (a paid request's charge carries the same id)."""
        if not self.enabled:
            return
        started = time.monotonic()
        request_id = request_id or uuid.uuid4().hex

        def finished(stream: Any, outcome: str) -> None:
            usage = stream.usage
            self.record(
                principal=principal,
                agent_id=agent_id,
                route=route,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                latency_s=time.monotonic() - started,
                outcome=outcome,
                request_id=request_id,
            )

        reply.on_finish.append(finished)

    def record(
        self,
        *,
        principal: Principal,
        agent_id: str | None,
        route: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        audio_seconds: float = 0.0,
        latency_s: float = 0.0,
        outcome: str = "ok",
        request_id: str | None = None,
    ) -> None:
        """Queue one record (written within ``ANIMA_USAGE_FLUSH_S``); never touches the
        database on the caller's thread."""
        if not self.enabled:
            return
        now = datetime.now(UTC)
        row: Row = {
            "id": request_id or uuid.uuid4().hex,
            "created_at": now,
            "key_id": principal.key_id,
            "address": principal.address,
            "visitor_id": principal.visitor_id,
            "agent_id": agent_id,
            "route": route[:32],
            "prompt_tokens": int(prompt_tokens),
            "completion_tokens": int(completion_tokens),
            "audio_seconds": float(audio_seconds),
            "latency_ms": int(latency_s * 1000),
            "outcome": outcome[:16],
        }
        with self.limiter.lock:  # the period load must see this row once: queued or counted
            self.writer.put(row)
            if principal.key_id is not None:
                self.limiter.add_tokens(principal.key_id, prompt_tokens + completion_tokens, now)

    def _own_key(self, key_id: str, principal: Principal) -> KeyPolicy:
        policy = self._key_policy(key_id)
        if policy is None or not principal.is_address(policy.address):
            raise NotFoundError(f"no API key {key_id!r} of yours")
        return policy

    def _tokens_since(self, key_id: str, since: datetime) -> int:
        """A key's tokens since ``since``: written rows plus those still queued (under the
        limiter's lock and the writer's flush lock, so no row is counted twice or missed)."""
        with self.writer._flush_lock:
            queued = sum(
                r["prompt_tokens"] + r["completion_tokens"]
                for r in self.writer.pending()
                if r["key_id"] == key_id and r["created_at"] >= since
            )
            with self.db.session() as s:
                written = s.scalar(
                    select(
                        func.coalesce(
                            func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0
                        )
                    ).where(UsageRecord.key_id == key_id, UsageRecord.created_at >= since)
                )
        return int(written or 0) + queued

    def flush(self) -> int:
        return self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    # ----- reading --------------------------------------------------------------------
    def report(self, query: UsageQuery, *, principal: Principal) -> UsageReport:
        """The caller's own usage (by their wallet and keys) and, for the agents they own,
        everyone's use of those agents, in aggregate (never who the other callers were).

        Grouping by key shows only the caller's own keys.
        """
        if principal.address is None:
            raise AuthError("sign in (or use an API key) to see usage")
        if query.since and query.until and query.since > query.until:
            raise ValidationError("since is after until")
        mine = UsageRecord.address == principal.address
        owned = self._owned_agents(principal)
        if query.key_id is not None:
            self._own_key(query.key_id, principal)
        visible = (
            mine
            if query.group_by == "key" or not owned
            else or_(mine, UsageRecord.agent_id.in_(owned))
        )
        filters = [visible]
        if query.since is not None:
            filters.append(UsageRecord.created_at >= query.since)
        if query.until is not None:
            filters.append(UsageRecord.created_at < query.until)
        if query.agent_id is not None:
            filters.append(UsageRecord.agent_id == query.agent_id)
        if query.key_id is not None:
            filters.append(UsageRecord.key_id == query.key_id)
        self.flush()  # what was used a moment ago belongs in the answer
        with self.db.session() as s:
            rows = s.execute(select(UsageRecord).where(*filters)).scalars().all()
            return UsageReport(group_by=query.group_by, rows=_aggregate(rows, query.group_by))


def _caller_of(row: UsageRecord) -> str:
    """Who a record counts as, for distinct users: a wallet (whether it came by session or by
    one of its keys), else a browser's visitor id; all anonymous callers count as one."""
    if row.address:
        return row.address.lower()
    return f"visitor:{row.visitor_id}" if row.visitor_id else "anonymous"


def _group_of(row: UsageRecord, group_by: GroupBy) -> str | None:
    if group_by == "day":
        return row.created_at.astimezone(UTC).strftime("%Y-%m-%d")
    return row.agent_id if group_by == "agent" else row.key_id


def _aggregate(rows: Any, group_by: GroupBy) -> list[UsageRow]:
    """Sums per group in Python: the rows of one caller's filter are few, and the same code
    reads SQLite and PostgreSQL dates alike."""
    groups: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        g = groups.setdefault(
            _group_of(row, group_by),
            {"requests": 0, "users": set(), "prompt": 0, "completion": 0, "audio": 0.0},
        )
        g["requests"] += 1
        g["users"].add(_caller_of(row))
        g["prompt"] += row.prompt_tokens
        g["completion"] += row.completion_tokens
        g["audio"] += row.audio_seconds
    return [
        UsageRow(
            group=name,
            requests=g["requests"],
            users=len(g["users"]),
            prompt_tokens=g["prompt"],
            completion_tokens=g["completion"],
            total_tokens=g["prompt"] + g["completion"],
            audio_seconds=round(g["audio"], 3),
        )
        for name, g in sorted(groups.items(), key=lambda item: item[0] or "")
    ]
