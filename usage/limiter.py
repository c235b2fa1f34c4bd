"""Per-key counters in memory: requests and tokens in the last minute, open streams, and the
tokens used in the budget's current period.

Nothing here reads the database per request. A key's period total is loaded once per period
(the database's rows plus the records not written yet) and then kept up to date by every
record the process meters; the minute windows live only in memory (after a restart a key
starts a fresh minute, which errs on the caller's side by at most one minute's allowance).

A request is admitted all at once or not at all: every check runs before anything is counted,
so a refused request leaves no trace in the counters (and is never metered).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chain.api_keys import KeyPolicy
from core.errors import BudgetExceededError, RateLimitError

WINDOW_S = 60.0


def period_start(period: str, now: datetime) -> datetime:
    """The start (UTC) of the budget period ``now`` falls in: the day or the month."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1) if period == "month" else day


def period_end(period: str, start: datetime) -> datetime:
    if period == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return datetime.fromtimestamp(start.timestamp() + 86400, UTC)


@dataclass
class _KeyState:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    tokens_in_window: int = 0
    streams: int = 0
    period: datetime | None = None
    period_tokens: int = 0


@dataclass(frozen=True)
class Admission:
    """An admitted request: the key, whether it holds a stream slot, and its headers."""

    key_id: str | None
    holds_stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyCounters:
    requests_this_minute: int
    tokens_this_minute: int
    open_streams: int
    period_start: datetime
    period_end: datetime
    period_tokens: int


class Limiter:
    """``admit`` before a request, ``release`` after it, ``add_tokens`` when it is metered.

    ``load_period(key_id, since)`` returns the tokens the key used since ``since``, written
    or not (given by the usage service); it runs under this limiter's lock, once per key and
    period, so that no record lands between the load and the first count.
    """

    def __init__(
        self,
        load_period: Callable[[str, datetime], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_period = load_period
        self._clock = clock
        self._lock = threading.RLock()
        self._keys: dict[str, _KeyState] = {}

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def admit(self, policy: KeyPolicy, *, generates: bool) -> Admission:
        """Count one request of key ``policy`` or raise 429 (rate, streams) / 402 (budget).

        ``generates``: the request runs the model (holds a stream slot, spends tokens).
        """
        now = self._clock()
        with self._lock:
            state = self._state(policy.id)
            self._expire(state, now)
            headers = self._headers(policy, state, now)
            if policy.rpm is not None and len(state.requests) >= policy.rpm:
                wait = state.requests[0] + WINDOW_S - now
                raise RateLimitError(
                    f"rate limit: this key may send {policy.rpm} requests a minute",
                    retry_after=max(1, math.ceil(wait)),
                    headers=headers,
                )
            if generates:
                self._check_generation(policy, state, now, headers)
            state.requests.append(now)
            if generates:
                state.streams += 1
            headers = self._headers(policy, state, now)
        return Admission(policy.id, holds_stream=generates, headers=headers)

    def _check_generation(
        self, policy: KeyPolicy, state: _KeyState, now: float, headers: dict[str, str]
    ) -> None:
        if policy.max_streams is not None and state.streams >= policy.max_streams:
            raise RateLimitError(
                f"concurrency limit: this key may have {policy.max_streams} replies running "
                "at once; wait until one ends",
                retry_after=1,
                headers=headers,
            )
        if policy.tpm is not None and state.tokens_in_window >= policy.tpm:
            wait = state.tokens[0][0] + WINDOW_S - now if state.tokens else 1
            raise RateLimitError(
                f"token rate limit: this key may use {policy.tpm} tokens a minute",
                retry_after=max(1, math.ceil(wait)),
                headers=headers,
            )
        if policy.budget_tokens is not None:
            used = self._period_tokens(policy, state)
            if used >= policy.budget_tokens:
                raise BudgetExceededError(
                    f"budget spent: this key used {used} of its {policy.budget_tokens} tokens "
                    f"this {policy.budget_period}",
                    used=used,
                    limit=policy.budget_tokens,
                )

    def release(self, admission: Admission) -> None:
        if admission.key_id is None or not admission.holds_stream:
            return
        with self._lock:
            state = self._keys.get(admission.key_id)
            if state is not None and state.streams > 0:
                state.streams -= 1

    def add_tokens(self, key_id: str, tokens: int, at: datetime) -> None:
        """Count a metered request's tokens (called with the record, before it is written)."""
        if tokens <= 0:
            return
        now = self._clock()
        with self._lock:
            state = self._state(key_id)
            state.tokens.append((now, tokens))
            state.tokens_in_window += tokens
            if state.period is not None and at >= state.period:
                state.period_tokens += tokens

    def counters(self, policy: KeyPolicy) -> KeyCounters:
        now = self._clock()
        with self._lock:
            state = self._state(policy.id)
            self._expire(state, now)
            used = self._period_tokens(policy, state)
            assert state.period is not None
            return KeyCounters(
                requests_this_minute=len(state.requests),
                tokens_this_minute=state.tokens_in_window,
                open_streams=state.streams,
                period_start=state.period,
                period_end=period_end(policy.budget_period, state.period),
                period_tokens=used,
            )

    # ----- internals ------------------------------------------------------------------
    def _state(self, key_id: str) -> _KeyState:
        state = self._keys.get(key_id)
        if state is None:
            state = self._keys[key_id] = _KeyState()
        return state

    def _expire(self, state: _KeyState, now: float) -> None:
        while state.requests and state.requests[0] <= now - WINDOW_S:
            state.requests.popleft()
        while state.tokens and state.tokens[0][0] <= now - WINDOW_S:
            state.tokens_in_window -= state.tokens.popleft()[1]

    def _period_tokens(self, policy: KeyPolicy, state: _KeyState) -> int:
        start = period_start(policy.budget_period, datetime.now(UTC))
        if state.period != start:  # first use, or a new day/month: load it once
            state.period = start
            state.period_tokens = self._load_period(policy.id, start)
        return state.period_tokens

    def _headers(self, policy: KeyPolicy, state: _KeyState, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        if policy.rpm is not None:
            reset = state.requests[0] + WINDOW_S - now if state.requests else 0.0
            headers["x-ratelimit-limit-requests"] = str(policy.rpm)
            headers["x-ratelimit-remaining-requests"] = str(
                max(0, policy.rpm - len(state.requests))
            )
            headers["x-ratelimit-reset-requests"] = f"{max(0.0, reset):.0f}s"
        if policy.tpm is not None:
            reset = state.tokens[0][0] + WINDOW_S - now if state.tokens else 0.0
            headers["x-ratelimit-limit-tokens"] = str(policy.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(
                max(0, policy.tpm - state.tokens_in_window)
            )
            headers["x-ratelimit-reset-tokens"] = f"{max(0.0, reset):.0f}s"
        return headers
