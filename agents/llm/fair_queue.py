"""The scheduler's waiting room: one queue per tenant, and whose turn is next.

When a place frees, the tenant with the fewest running requests goes first, among equals the
one that became active or was served longest ago (round robin); within a tenant, its oldest
ticket whose lane has room. Kept apart from ``agents.llm.scheduler`` so the fairness rule reads
on its own, without the threads, deadlines and buffers around it.

Not thread-safe: the scheduler calls every method under its lock.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.llm.scheduler import Ticket


class FairQueue:
    """Waiting tickets by tenant key (FIFO scheduling: everyone shares the key ``""``)."""

    def __init__(self) -> None:
        # The waiting tickets by tenant, how many of each tenant's requests run, and each
        # active tenant's turn: (0, when it became active) until one of its requests starts,
        # then (1, when one started last). A tenant is active while it has requests waiting
        # or running, and forgotten after.
        self._waiting: dict[str, collections.deque[Ticket]] = {}
        self._running: collections.Counter[str] = collections.Counter()
        self._turn: dict[str, tuple[int, int]] = {}
        self._clock = 0
        self.queued = 0

    def waiting_of(self, key: str) -> int:
        """How many of tenant ``key``'s tickets wait."""
        return len(self._waiting.get(key, ()))

    def push(self, key: str, ticket: Ticket) -> None:
        queue = self._waiting.get(key)
        if queue is None:
            queue = self._waiting[key] = collections.deque()
        self._turn.setdefault(key, (0, self._tick()))
        queue.append(ticket)
        self.queued += 1

    def pop_next(self) -> Ticket | None:
        """The next ticket to start, counted as running for its tenant; None when every
        waiting ticket's lane is full.

        A ticket whose lane is full keeps its place and its tenant its turn, so the next
        tenant with a ticket for a free lane goes meanwhile.
        """
        for key in sorted(self._waiting, key=self._order):
            queue = self._waiting[key]
            ticket = _pick(queue)
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

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _order(self, key: str) -> tuple[int, int, int]:
        return (self._running[key], *self._turn[key])

    def _forget_if_idle(self, key: str) -> None:
        if key not in self._waiting and self._running[key] <= 0:
            self._running.pop(key, None)
            self._turn.pop(key, None)


def _pick(queue: collections.deque[Ticket]) -> Ticket | None:
    """Within one tenant: its oldest ticket whose lane has room."""
    for ticket in queue:
        if ticket.lane.running < ticket.lane.capacity:
            return ticket
    return None
