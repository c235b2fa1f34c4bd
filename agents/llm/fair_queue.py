"""The scheduler's waiting room: one queue per tenant, and whose turn is next.

When a place frees, the tenant with the fewest running requests goes first, among equals the
one that became active or was served longest ago (round robin); within a tenant, its oldest
ticket whose lane has room. A tenant that runs nothing but asked for something in the last
``RECENT_S`` seconds keeps one place of each lane free for itself: without that, a tenant with
many streams takes every place the moment one frees, and the next request of a light tenant
waits for a whole reply to end (measured: 0.74 s instead of 0.08 s to its first token while
another key held 64 streams). Tenants that both run requests share by turns as before, so
no place stays idle while two floods wait.

Kept apart from ``agents.llm.scheduler`` so the fairness rule reads on its own, without the
threads, deadlines and buffers around it.

Not thread-safe: the scheduler calls every method under its lock.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.llm.scheduler import Ticket


# How long a tenant that asked for something still counts as active (keeps a place free).
RECENT_S = 10.0


class FairQueue:
    """Waiting tickets by tenant key (FIFO scheduling: everyone shares the key ``""``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # The waiting tickets by tenant, how many of each tenant's requests run, and each
        # active tenant's turn: (0, when it became active) until one of its requests starts,
        # then (1, when one started last). A tenant is active while it has requests waiting
        # or running, and forgotten after.
        self._waiting: dict[str, collections.deque[Ticket]] = {}
        self._running: collections.Counter[str] = collections.Counter()
        self._turn: dict[str, tuple[int, int]] = {}
        self._clock = 0
        self.queued = 0
        self._now = clock
        self._asked: dict[str, float] = {}  # tenant -> when it last asked for something

    def waiting_of(self, key: str) -> int:
        """How many of tenant ``key``'s tickets wait."""
        return len(self._waiting.get(key, ()))

    def push(self, key: str, ticket: Ticket) -> None:
        queue = self._waiting.get(key)
        if queue is None:
            queue = self._waiting[key] = collections.deque()
        self._turn.setdefault(key, (0, self._tick()))
        self._asked[key] = self._now()
        queue.append(ticket)
        self.queued += 1

    def running_of(self, key: str) -> int:
        """How many of tenant ``key``'s requests run."""
        return self._running[key]

    def pop_next(self, held: Callable[[str], bool] | None = None) -> Ticket | None:
        """The next ticket to start, counted as running for its tenant; None when every
        waiting ticket's lane is full (or its tenant is ``held`` for now).

        A ticket whose lane is full keeps its place and its tenant its turn, so the next
        tenant with a ticket for a free lane goes meanwhile.
        """
        for key in sorted(self._waiting, key=self._order):
            if held is not None and held(key):
                continue
            queue = self._waiting[key]
            ticket = _pick(queue, self._kept_free_for_others(key))
            if ticket is not None:
                break
        else:
            return None
        queue.remove(ticket)
        self.queued -= 1
        if not queue:
            del self._waiting[key]
        self._running[key] += 1
        self._turn[key] = (1, self._tick())  # served: to the back of the round
        return ticket

    def finished(self, key: str) -> None:
        """One of tenant ``key``'s running requests ended."""
        self._running[key] -= 1
        self._forget_if_idle(key)

    def remove(self, key: str, ticket: Ticket) -> None:
        """Take a waiting ticket out (cancelled); nothing if it no longer waits."""
        queue = self._waiting.get(key)
        if queue is None or ticket not in queue:
            return
        queue.remove(ticket)
        self.queued -= 1
        if not queue:
            del self._waiting[key]
            self._forget_if_idle(key)

    def _kept_free_for_others(self, key: str) -> int:
        """Places tenant ``key`` leaves free: one for each other tenant that asked lately and
        runs nothing now."""
        cutoff = self._now() - RECENT_S
        for other, when in list(self._asked.items()):
            if when < cutoff:
                del self._asked[other]
        return sum(1 for other in self._asked if other != key and self._running[other] <= 0)

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _order(self, key: str) -> tuple[int, int, int]:
        return (self._running[key], *self._turn[key])

    def _forget_if_idle(self, key: str) -> None:
        if key not in self._waiting and self._running[key] <= 0:
            self._running.pop(key, None)
            self._turn.pop(key, None)


def _pick(queue: collections.deque[Ticket], kept_free: int = 0) -> Ticket | None:
    """Within one tenant: its oldest ticket whose lane has room, leaving ``kept_free`` places
    for others (never all of them: a lane of one place is everyone's)."""
    for ticket in queue:
        lane = ticket.lane
        if lane.running < lane.capacity - min(kept_free, lane.capacity - 1):
            return ticket
    return None
