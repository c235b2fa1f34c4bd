"""Admission and scheduling in front of every language model backend.

Before this existed, each backend serialised generation with a lock held while the client
read, and every waiting request held a server thread: past the thread pool's size the lock
holder could not get a thread to continue and everything deadlocked; one slow reader blocked
everyone. Here instead:

- A request is a ``Ticket``. Waiting costs no thread: sync readers block on a condition, async
  readers (the API) await a future on their own event loop.
- Each engine is a ``Lane`` with a capacity (the transformers backend runs 1 sequence at a
  time; the llama.cpp engine runs ``llm_parallel`` slots that decode in the same steps). Only
  running requests get a worker thread, so threads are bounded by the lanes' capacities.
- The queue is bounded (``llm_queue_size``): when it is full a request is refused at once with
  ``QueueFullError`` (HTTP 429 + ``Retry-After``) rather than waiting without end; while a model
  loads, requests get ``ModelLoadingError`` (503 + ``Retry-After``).
- Every request has a deadline (``llm_request_timeout_s``): still queued then, it ends with
  ``ServerBusyError`` (503); still running, generation stops with ``DeadlineExceededError``.
- A reader that goes away (``close()``/``aclose()``: a disconnect) cancels its ticket, queued or
  running; the running generation stops at its next token and frees its place.
- The worker never waits for the reader: deltas go into a bounded buffer
  (``llm_stream_buffer``); a reader that falls that far behind is cut off
  (``ReaderTooSlowError``) and the model moves on. So a stalled client never holds the model.
- Waiting is per tenant (``llm_scheduling = "fair"``): one client that opens 64 streams
  must not make everyone else wait behind them. A request's tenant is its API key, else the
  signed-in wallet, else the browser's anonymous identity, else one shared anonymous lane
  (``tenant_of``); it reaches the scheduler through the ``TENANT`` context variable, set with
  ``tenant_scope`` by whoever knows the caller (the chat service, the ``/v1`` router), and read
  once, in the thread that submits the request. When a place frees, the tenant with the fewest
  running requests goes first, among equals the one served least recently (round robin), and
  one tenant may hold at most ``llm_tenant_queue_size`` of the waiting places, so a flood hits
  its own cap before the whole queue fills. ``llm_scheduling = "fifo"`` keeps the single queue
  (one tenant for everybody, no per-tenant cap), for comparison.

Round robin counts running requests, not tokens: how long a reply will run is unknown when it is
admitted (``max_new_tokens`` is only a bound and most replies stop early), and what is scarce
is a running place, which each start takes one of. Grouping by adapter fits the same pick:
``_pick`` (``agents.llm.fair_queue``) chooses within the chosen tenant's queue (today the
oldest ticket whose lane has room) and may prefer one whose adapter already runs; among
tenants, it may serve as a tie-break only, so no tenant waits longer than one round.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from typing import Any, Literal

from agents.llm.base import Completion, SchedulableBackend, StreamResult, complete_from_stream
from agents.llm.fair_queue import FairQueue
from agents.schema import ChatMessage, GenerationSettings
from core.errors import (
    AnimaError,
    BackendError,
    DeadlineExceededError,
    ModelLoadingError,
    QueueFullError,
    ReaderTooSlowError,
    ServerBusyError,
)
from core.principal import Principal

log = logging.getLogger(__name__)

_END = object()

Scheduling = Literal["fair", "fifo"]
ANONYMOUS_TENANT = "anonymous"
COUNT_CACHE_SIZE = 16384  # token counts of recent texts kept per backend
# How long a light tenant's request waiting for its first token holds back busier tenants.
FIRST_TOKEN_PRIORITY_S = 2.0
# Who the request being submitted is for. A context variable so that it travels through the
# seam every backend shares (``stream(messages, params, result)``) without a parameter:
# ``anyio.to_thread.run_sync`` and ``asyncio`` tasks copy the context, and the scheduler reads
# it in ``submit``, in the caller's thread, before any worker thread of its own starts.
TENANT: contextvars.ContextVar[str] = contextvars.ContextVar(
    "anima_llm_tenant", default=ANONYMOUS_TENANT
)


def tenant_of(principal: Principal) -> str:
    """The fairness unit of a caller: API key, else wallet, else browser, else shared."""
    if principal.key_id:
        return f"key:{principal.key_id}"
    if principal.address:
        return f"wallet:{principal.address.lower()}"
    if principal.visitor_id:
        return f"visitor:{principal.visitor_id}"
    return ANONYMOUS_TENANT


@contextlib.contextmanager
def tenant_scope(principal: Principal) -> Iterator[str]:
    """Requests submitted inside this block wait in ``principal``'s own queue."""
    token = TENANT.set(tenant_of(principal))
    try:
        yield TENANT.get()
    finally:
        TENANT.reset(token)


class Lane:
    """One engine's running places; tickets for it start while ``running < capacity``."""

    def __init__(self, key: Hashable, capacity: int) -> None:
        self.key = key
        self.capacity = max(1, capacity)
        self.running = 0
        self.peak = 0  # most requests that ran at once (tests, benchmarks)
        # Exponential average of how long a request holds a place: for Retry-After.
        self.avg_run_s = 2.0

    def record(self, seconds: float) -> None:
        self.avg_run_s = 0.8 * self.avg_run_s + 0.2 * seconds


class Ticket:
    """One request: its place in the queue, then the text deltas its generation produced.

    Iterate it (sync or async) for deltas. ``close``/``aclose`` cancel it. Only the
    scheduler's worker calls ``_put``/``_finish``.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        lane: Lane,
        work: Callable[[], Iterator[str]],
        deadline: float,
        buffer_limit: int,
        tenant: str = ANONYMOUS_TENANT,
    ) -> None:
        self._scheduler = scheduler
        self.lane = lane
        self.tenant = tenant
        self._work = work
        self.deadline = deadline
        self._limit = max(1, buffer_limit)
        self._cond = threading.Condition()
        self._items: collections.deque[str] = collections.deque()
        self._done = False
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.state = "queued"  # queued -> running -> done | cancelled
        self.cancelled = False
        self.enqueued_at = time.monotonic()
        self.started_at: float | None = None
        self.first_at: float | None = None  # when its first delta arrived

    # ----- producer side (the scheduler's worker thread) --------------------------------
    def _put(self, delta: str) -> bool:
        """Buffer one delta; False tells the worker to stop generating."""
        with self._cond:
            if self.cancelled:
                return False
            if time.monotonic() > self.deadline:
                self._error = DeadlineExceededError(
                    "the reply took longer than the request deadline (ANIMA_LLM_REQUEST_TIMEOUT_S)"
                )
                return False
            if len(self._items) >= self._limit:
                self._error = ReaderTooSlowError(
                    "the client read the reply too slowly; generation was stopped"
                )
                return False
            self._items.append(delta)
        self._wake()
        return True

    def _finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            if error is not None and self._error is None:
                self._error = error
            self._done = True
            if self.state == "running":
                self.state = "done"
        self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: its reader is gone
                loop.call_soon_threadsafe(_resolve, future)

    # ----- consumer side -----------------------------------------------------------------
    def _take(self) -> Any:
        """The next delta, ``_END``, or None when nothing is ready; raises a stored error.

        Called with ``_cond`` held.
        """
        if self._items:
            return self._items.popleft()
        if self._done or self.cancelled:
            if self._error is not None:
                raise self._error
            return _END
        if time.monotonic() > self.deadline:
            self._expire()
        return None

    def _expire(self) -> None:
        """The deadline passed while nothing arrived: give up on this request."""
        queued = self.state == "queued"
        self._scheduler._cancel(self)
        if queued:
            waited = time.monotonic() - self.enqueued_at
            raise ServerBusyError(
                f"the server is busy: waited {waited:.0f} s in the queue without a free model "
                "slot; try again later",
                retry_after=self._scheduler.retry_after(self.lane),
            )
        raise DeadlineExceededError(
            "the reply took longer than the request deadline (ANIMA_LLM_REQUEST_TIMEOUT_S)"
        )

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        with self._cond:
            while True:
                item = self._take()
                if item is _END:
                    raise StopIteration
                if item is not None:
                    return item
                self._cond.wait(timeout=max(0.01, min(1.0, self.deadline - time.monotonic())))

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                item = self._take()
                if item is _END:
                    raise StopAsyncIteration
                if item is not None:
                    return item
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            timeout = max(0.01, min(1.0, self.deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout=timeout)
            # CancelledError (the client went away) propagates; the owner calls aclose().

    def close(self) -> None:
        """Cancel: a queued ticket leaves the queue, a running one stops at its next token."""
        self._scheduler._cancel(self)

    async def aclose(self) -> None:
        self.close()

    def __del__(self) -> None:  # an abandoned iterator must not keep its place
        if not self.cancelled and self.state in {"queued", "running"}:
            self._scheduler._cancel(self)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Scheduler:
    """The one queue in front of every backend: admission, fairness, deadlines, cancellation."""

    def __init__(
        self,
        max_queue: int = 64,
        request_timeout_s: float = 300.0,
        stream_buffer: int = 512,
        scheduling: Scheduling = "fair",
        tenant_queue: int = 32,
    ) -> None:
        self.max_queue = max(0, max_queue)
        self.request_timeout_s = request_timeout_s
        self.stream_buffer = stream_buffer
        if scheduling not in ("fair", "fifo"):
            raise ValueError(f"unknown scheduling {scheduling!r}: use fair or fifo")
        self.scheduling = scheduling
        # Waiting places one tenant may hold (fair only); below max_queue, a flood is refused
        # while others still find room. 0: no cap of its own.
        self.tenant_queue = max(0, tenant_queue)
        self._lock = threading.Lock()
        # The waiting tickets by tenant (FIFO mode: everyone is one tenant) and whose turn is
        # next (``agents.llm.fair_queue``).
        self._queue = FairQueue()
        self._lanes: dict[Hashable, Lane] = {}
        self._running: set[Ticket] = set()
        self._holding = False  # some tenant is held back until a first token (see _held_locked)

    # ----- public ------------------------------------------------------------------------
    def lane(self, key: Hashable, capacity: int) -> Lane:
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = Lane(key, capacity)
            lane.capacity = max(1, capacity)
            return lane

    def submit(
        self, lane: Lane, work: Callable[[], Iterator[str]], tenant: str | None = None
    ) -> Ticket:
        """Queue ``work`` (a function returning the backend's delta iterator) on ``lane``.

        ``tenant``: whose queue it waits in (default: the ``TENANT`` context variable).
        Raises ``QueueFullError`` at once when ``max_queue`` requests already wait, or (fair
        scheduling) when this tenant already holds its share of the waiting places.
        """
        ticket = Ticket(
            self,
            lane,
            work,
            time.monotonic() + self.request_timeout_s,
            self.stream_buffer,
            tenant if tenant is not None else TENANT.get(),
        )
        key = self._queue_key(ticket)
        with self._lock:
            waiting = self._queue.queued
            if lane.running >= lane.capacity:
                if waiting >= self.max_queue:
                    raise QueueFullError(
                        f"the server is busy: {waiting} requests are already waiting "
                        "(ANIMA_LLM_QUEUE_SIZE); try again later",
                        retry_after=self._retry_after_locked(lane, waiting),
                    )
                mine = self._queue.waiting_of(key)
                if self.scheduling == "fair" and 0 < self.tenant_queue <= mine:
                    raise QueueFullError(
                        f"too many requests of yours are waiting ({mine}, "
                        "ANIMA_LLM_TENANT_QUEUE_SIZE); try again later",
                        retry_after=self._retry_after_locked(lane, mine),
                    )
            self._queue.push(key, ticket)
            starts = self._dispatch_locked()
        self._start(starts)
        return ticket

    def stats(self) -> dict[str, int]:
        """Queued and running requests (cheap: for ``/api/health``)."""
        with self._lock:
            return {
                "queued": self._queue.queued,
                "running": sum(lane.running for lane in self._lanes.values()),
            }

    def retry_after(self, lane: Lane) -> int:
        with self._lock:
            return self._retry_after_locked(lane, self._queue.queued)

    # ----- internals ---------------------------------------------------------------------
    def _retry_after_locked(self, lane: Lane, waiting: int) -> int:
        """Seconds until a place is likely free: the queue ahead times the average run."""
        return max(1, min(60, math.ceil(lane.avg_run_s * (waiting + 1) / lane.capacity)))

    def _queue_key(self, ticket: Ticket) -> str:
        return ticket.tenant if self.scheduling == "fair" else ""

    def _dispatch_locked(self) -> list[Ticket]:
        """Start what fits, in the fair queue's order (``agents.llm.fair_queue``)."""
        starts: list[Ticket] = []
        held = self._held_locked()
        while self._queue.queued:
            ticket = self._queue.pop_next(held)
            if ticket is None:
                return starts  # every waiting ticket's lane is full (or held back)
            ticket.lane.running += 1
            ticket.lane.peak = max(ticket.lane.peak, ticket.lane.running)
            ticket.state = "running"
            ticket.started_at = time.monotonic()
            self._running.add(ticket)
            starts.append(ticket)
        return starts

    def _held_locked(self) -> Callable[[str], bool] | None:
        """Tenants that may not start a request right now (fair scheduling only).

        The engine computes the prompts of the requests that start together in the same
        steps; a flood starting its next requests beside a light tenant's one request makes
        that request wait for their prompts too before its first token. So while the only
        running request of some tenant waits for its first token (for at most
        ``FIRST_TOKEN_PRIORITY_S``), tenants that already run something start nothing more;
        the first token (or the request's end) releases them."""
        if self.scheduling != "fair":
            return None
        now = time.monotonic()
        waiting_first = {
            t.tenant
            for t in self._running
            if t.first_at is None
            and t.started_at is not None
            and now - t.started_at < FIRST_TOKEN_PRIORITY_S
            and self._queue.running_of(t.tenant) == 1
        }
        if not waiting_first:
            self._holding = False
            return None
        self._holding = True
        queue = self._queue

        def held(key: str) -> bool:
            return key not in waiting_first and queue.running_of(key) > 0

        return held

    def _first_delta(self, ticket: Ticket) -> None:
        """A request's first delta: tenants held back for it may start again."""
        ticket.first_at = time.monotonic()
        if not self._holding:
            return
        with self._lock:
            starts = self._dispatch_locked()
        self._start(starts)

    def _start(self, tickets: list[Ticket]) -> None:
        for ticket in tickets:
            threading.Thread(
                target=self._run, args=(ticket,), name="llm-request", daemon=True
            ).start()

    def _run(self, ticket: Ticket) -> None:
        error: BaseException | None = None
        source: Iterator[str] | None = None
        try:
            source = ticket._work()
            for delta in source:
                if not ticket._put(delta):
                    break
                if ticket.first_at is None:
                    self._first_delta(ticket)
        except AnimaError as exc:
            error = exc
        except Exception as exc:  # a backend bug: report it as a backend failure
            log.exception("generation failed")
            error = BackendError(f"generation failed: {type(exc).__name__}: {exc}")
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                try:
                    close()  # stops the engine's generation if we left early
                except Exception:
                    log.exception("closing a generation failed")
            ticket._finish(error)
            with self._lock:
                ticket.lane.running -= 1
                self._running.discard(ticket)
                self._queue.finished(self._queue_key(ticket))
                if ticket.started_at is not None:
                    ticket.lane.record(time.monotonic() - ticket.started_at)
                starts = self._dispatch_locked()
            self._start(starts)

    def _cancel(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.cancelled or ticket.state in {"done", "cancelled"}:
                ticket.cancelled = True
                return
            ticket.cancelled = True
            if ticket.state == "queued":
                self._queue.remove(self._queue_key(ticket), ticket)
                ticket.state = "cancelled"
        ticket._wake()


class ScheduledBackend:
    """An ``LLMBackend`` whose ``stream`` goes through the scheduler.

    The backend behind it is what the factory built; this adds admission, the model-loading
    state (503 while another request loads it) and the lane its requests run on.
    """

    def __init__(self, backend: SchedulableBackend, scheduler: Scheduler) -> None:
        self.backend = backend
        self.scheduler = scheduler
        self._load_lock = threading.Lock()
        self._loading = False
        # Fitting a chat's history into the window counts every message again at each send
        # (about 500 tokenizer calls for a long chat): the texts repeat, so the counts are kept.
        self._count_cached = functools.lru_cache(maxsize=COUNT_CACHE_SIZE)(backend.count_tokens)

    def __getattr__(self, name: str) -> Any:
        """Anything else (``settings``, ``load_seconds``, ...) is the backend's."""
        if name == "backend":  # not set yet (during unpickling or a failed __init__)
            raise AttributeError(name)
        return getattr(self.backend, name)

    # ----- LLMBackend ----------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.backend.model_name

    @property
    def context_window(self) -> int:
        self.ensure_ready()
        return self.backend.context_window

    def count_tokens(self, text: str) -> int:
        self.ensure_ready()
        return self._count_cached(text)

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Ticket:
        """Admit the request now (429 here, before any response starts), stream later."""
        self.ensure_ready()
        result = result if result is not None else StreamResult()
        lane = self.scheduler.lane(self.backend.lane_key, self.backend.max_concurrency)
        return self.scheduler.submit(lane, lambda: self.backend.stream(messages, params, result))

    def complete(self, messages: list[ChatMessage], params: GenerationSettings) -> Completion:
        return complete_from_stream(self, messages, params)

    # ----- loading -----------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self.backend.is_loaded

    def load(self) -> None:
        """Load now in this thread (preload, or the first request of a cold model)."""
        if self.is_loaded:
            return
        with self._load_lock:
            self._loading = True
            try:
                self.backend.load()
            finally:
                self._loading = False

    def ensure_ready(self) -> None:
        """Loaded: go. Loading in another thread: 503 with Retry-After. Else load here."""
        if self.is_loaded:
            return
        if self._loading:
            raise ModelLoadingError(
                f"the model {self.model_name} is loading; try again in a few seconds",
                retry_after=5,
            )
        self.load()
