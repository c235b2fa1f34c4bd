"""The request scheduler on its own: admission, cancellation, deadlines, slow readers.

The backend here is a gated fake (failure injection: the tests decide when each token comes),
so every case is deterministic and fast; ``tests/agents/test_llamacpp.py`` and
``tests/api/test_serving_api.py`` run the same scheduler in front of the real engine.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from agents.llm.base import SchedulingDefaults, StreamResult
from agents.llm.scheduler import (
    ANONYMOUS_TENANT,
    TENANT,
    ScheduledBackend,
    Scheduler,
    Ticket,
    tenant_of,
    tenant_scope,
)
from agents.schema import ChatMessage, GenerationSettings
from core.errors import (
    DeadlineExceededError,
    ModelLoadingError,
    QueueFullError,
    ReaderTooSlowError,
    ServerBusyError,
)
from core.principal import ANONYMOUS, Principal
from tests.waiting import wait_until

MESSAGES = [ChatMessage(role="user", content="hi")]
PARAMS = GenerationSettings(max_new_tokens=8)


class GatedBackend(SchedulingDefaults):
    """A model that emits ``tokens`` pieces, each only when the test releases it (or at once
    when ``free_running``); records which generations were closed early."""

    model_name = "gated"
    context_window = 2048
    max_concurrency = 1

    def __init__(self, tokens: int = 5, free_running: bool = False, delay: float = 0.0) -> None:
        self.tokens = tokens
        self.free_running = free_running
        self.delay = delay  # seconds per token when free running
        self.gate = threading.Semaphore(0)
        self.started = 0
        self.closed_early = 0
        self.finished = 0
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.is_loaded = True

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def load(self) -> None:
        self.load_gate.wait(timeout=30)
        self.is_loaded = True

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        self.started += 1
        done = False
        try:
            for i in range(self.tokens):
                if not self.free_running:
                    assert self.gate.acquire(timeout=30), "test never released a token"
                elif self.delay:
                    time.sleep(self.delay)
                yield f"t{i} "
            done = True
            self.finished += 1
        finally:
            if not done:
                self.closed_early += 1

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.release()


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    backend = GatedBackend()
    sched = Scheduler(max_queue=2)
    model = ScheduledBackend(backend, sched)
    running = model.stream(MESSAGES, PARAMS)
    wait_until(lambda: backend.started == 1)
    waiting = [model.stream(MESSAGES, PARAMS) for _ in range(2)]
    assert sched.stats() == {"queued": 2, "running": 1}
    started = time.monotonic()
    with pytest.raises(QueueFullError) as info:
        model.stream(MESSAGES, PARAMS)
    assert time.monotonic() - started < 1  # refused, not parked
    assert info.value.status == 429 and info.value.retry_after >= 1
    backend.release(100)
    assert "".join(running) == "t0 t1 t2 t3 t4 "
    assert ["".join(t) for t in waiting] == ["t0 t1 t2 t3 t4 "] * 2  # FIFO, all served
    assert sched.stats() == {"queued": 0, "running": 0}


def test_closing_a_queued_request_removes_it_and_a_running_one_stops_generation() -> None:
    backend = GatedBackend(tokens=300)
    sched = Scheduler(max_queue=4)
    model = ScheduledBackend(backend, sched)
    first = model.stream(MESSAGES, PARAMS)
    second = model.stream(MESSAGES, PARAMS)
    third = model.stream(MESSAGES, PARAMS)
    wait_until(lambda: backend.started == 1)
    second.close()  # a client that gave up while waiting
    assert sched.stats() == {"queued": 1, "running": 1}
    backend.release(1)
    assert next(first) == "t0 "
    first.close()  # a client that disconnected mid-reply
    backend.release(1)  # the generation notices at its next token
    wait_until(lambda: backend.closed_early == 1)
    wait_until(lambda: backend.started == 2)  # the third request got the freed place
    assert list(second) == []  # never ran
    backend.free_running = True
    backend.release(1000)
    assert len(list(third)) == 300
    assert backend.started == 2


def test_a_reader_that_stops_reading_does_not_hold_the_model() -> None:
    backend = GatedBackend(tokens=50, free_running=True, delay=0.002)
    sched = Scheduler(max_queue=4, stream_buffer=8)
    model = ScheduledBackend(backend, sched)
    stalled = model.stream(MESSAGES, PARAMS)
    assert next(stalled) == "t0 "  # then the client stops reading
    nxt = model.stream(MESSAGES, PARAMS)
    assert "".join(nxt).count("t") == 50  # served while the stalled one never read
    assert backend.closed_early == 1  # the stalled generation was stopped at the buffer limit
    assert sched.stats() == {"queued": 0, "running": 0}
    with pytest.raises(ReaderTooSlowError):
        list(stalled)  # what was buffered, then the reason it was cut


def test_deadline_while_queued_is_503_and_while_running_stops_generation() -> None:
    backend = GatedBackend(tokens=100)
    sched = Scheduler(max_queue=4, request_timeout_s=0.5)
    model = ScheduledBackend(backend, sched)
    running = model.stream(MESSAGES, PARAMS)
    queued = model.stream(MESSAGES, PARAMS)
    with pytest.raises(ServerBusyError) as info:
        list(queued)
    assert info.value.status == 503 and info.value.retry_after
    with pytest.raises(DeadlineExceededError):
        list(running)
    backend.release(1)
    wait_until(lambda: sched.stats() == {"queued": 0, "running": 0})
    assert backend.started == 1  # the expired queued request never ran


def test_async_reader_waits_without_a_thread_and_cancellation_cancels() -> None:
    backend = GatedBackend(tokens=3)
    sched = Scheduler(max_queue=8)
    model = ScheduledBackend(backend, sched)

    async def scenario() -> None:
        blocker = model.stream(MESSAGES, PARAMS)
        waiters = [model.stream(MESSAGES, PARAMS) for _ in range(5)]
        threads = threading.active_count()

        async def read(ticket) -> str:
            try:
                return "".join([d async for d in ticket])
            finally:
                await ticket.aclose()

        tasks = [asyncio.create_task(read(t)) for t in waiters]
        await asyncio.sleep(0.2)
        assert threading.active_count() <= threads + 1  # 5 waiting readers, no new threads
        tasks[0].cancel()  # a client that went away while queued
        await asyncio.gather(tasks[0], return_exceptions=True)
        assert sched.stats()["queued"] == 4
        backend.free_running = True
        backend.release(3)
        assert "".join(blocker) == "t0 t1 t2 "
        results = await asyncio.gather(*tasks[1:])
        assert results == ["t0 t1 t2 "] * 4

    asyncio.run(scenario())
    assert backend.started == 5


def test_requests_while_the_model_loads_get_503() -> None:
    backend = GatedBackend(free_running=True)
    backend.is_loaded = False
    backend.load_gate.clear()
    model = ScheduledBackend(backend, Scheduler())
    loader = threading.Thread(target=model.load)
    loader.start()
    wait_until(lambda: model._loading)
    with pytest.raises(ModelLoadingError) as info:
        model.stream(MESSAGES, PARAMS)
    assert info.value.status == 503 and info.value.retry_after
    backend.load_gate.set()
    loader.join(timeout=10)
    assert "".join(model.stream(MESSAGES, PARAMS)) == "t0 t1 t2 t3 t4 "


# ----- fairness between tenants ------------------------------------------------------------


def _flood_and_one(sched: Scheduler, backend: GatedBackend) -> tuple[Ticket, list[Ticket], Ticket]:
    """One request of ``flood`` runs, 10 more of it wait, then ``light`` sends one."""
    model = ScheduledBackend(backend, sched)
    with tenant_scope(Principal(address=None, key_id="flood")):
        running = model.stream(MESSAGES, PARAMS)
        wait_until(lambda: backend.started == 1)
        flood = [model.stream(MESSAGES, PARAMS) for _ in range(10)]
    with tenant_scope(Principal(address=None, key_id="light")):
        light = model.stream(MESSAGES, PARAMS)
    assert [running.tenant, flood[0].tenant, light.tenant] == [
        "key:flood",
        "key:flood",
        "key:light",
    ]
    return running, flood, light


def _start_order(tickets: list[Ticket]) -> list[str]:
    assert tickets and all(t.started_at is not None for t in tickets)
    return [t.tenant for t in sorted(tickets, key=lambda t: t.started_at or 0.0)]


def test_a_flooding_tenant_does_not_starve_another() -> None:
    backend = GatedBackend(tokens=2)
    sched = Scheduler(max_queue=64)
    running, flood, light = _flood_and_one(sched, backend)
    backend.release(2)  # the running flood request ends: the light tenant goes next
    assert "".join(running) == "t0 t1 "
    wait_until(lambda: light.state == "running")
    assert [t.state for t in flood] == ["queued"] * 10
    backend.release(2)
    assert "".join(light) == "t0 t1 "
    backend.free_running = True
    backend.release(100)
    assert ["".join(t) for t in flood] == ["t0 t1 "] * 10  # the flood is served too, in order
    assert [t.started_at for t in flood] == sorted(t.started_at or 0.0 for t in flood)


def test_tenants_take_turns() -> None:
    backend = GatedBackend(tokens=1)
    sched = Scheduler(max_queue=64)
    model = ScheduledBackend(backend, sched)
    blocker = _stream_as(model, "z")
    wait_until(lambda: backend.started == 1)
    tickets = [_stream_as(model, "a") for _ in range(3)]
    tickets += [_stream_as(model, "b") for _ in range(3)]
    backend.free_running = True
    backend.release(10)
    assert "".join(blocker) == "t0 "
    for ticket in tickets:
        assert "".join(ticket) == "t0 "
    assert _start_order(tickets) == ["a", "b", "a", "b", "a", "b"]


def test_fifo_scheduling_keeps_arrival_order_and_has_no_tenant_cap() -> None:
    backend = GatedBackend(tokens=1)
    sched = Scheduler(max_queue=64, scheduling="fifo", tenant_queue=1)
    model = ScheduledBackend(backend, sched)
    blocker = _stream_as(model, "z")
    wait_until(lambda: backend.started == 1)
    tickets = [_stream_as(model, "a") for _ in range(3)]
    tickets += [_stream_as(model, "b") for _ in range(3)]
    assert sched.stats() == {"queued": 6, "running": 1}  # tenant_queue=1 does not apply
    backend.free_running = True
    backend.release(10)
    assert "".join(blocker) == "t0 "
    for ticket in tickets:
        assert "".join(ticket) == "t0 "
    assert _start_order(tickets) == ["a", "a", "a", "b", "b", "b"]


def test_a_tenant_is_refused_at_its_own_cap_while_others_still_get_in() -> None:
    backend = GatedBackend(tokens=1)
    sched = Scheduler(max_queue=8, tenant_queue=2)
    model = ScheduledBackend(backend, sched)
    blocker = _stream_as(model, "flood")
    wait_until(lambda: backend.started == 1)
    waiting = [_stream_as(model, "flood") for _ in range(2)]
    with pytest.raises(QueueFullError) as info:
        _stream_as(model, "flood")
    assert info.value.status == 429 and info.value.retry_after >= 1
    assert "ANIMA_LLM_TENANT_QUEUE_SIZE" in info.value.message
    other = _stream_as(model, "other")
    assert sched.stats() == {"queued": 3, "running": 1}
    waiting[0].close()  # a place of its own freed: the flood may queue one more
    again = _stream_as(model, "flood")
    backend.free_running = True
    backend.release(10)
    for ticket in [blocker, waiting[1], other, again]:
        assert "".join(ticket) == "t0 "
    assert sched.stats() == {"queued": 0, "running": 0}


def test_the_tenant_is_the_key_then_the_wallet_then_the_browser() -> None:
    wallet = "0xAbC0000000000000000000000000000000000001"
    assert tenant_of(Principal(address=wallet, via="api_key", key_id="k1")) == "key:k1"
    assert tenant_of(Principal(address=wallet, via="session")) == f"wallet:{wallet.lower()}"
    assert tenant_of(Principal(address=None, visitor_id="v1")) == "visitor:v1"
    assert tenant_of(ANONYMOUS) == ANONYMOUS_TENANT


def test_the_tenant_reaches_the_scheduler_through_worker_threads_and_tasks() -> None:
    import anyio.to_thread

    backend = GatedBackend(tokens=1, free_running=True)
    model = ScheduledBackend(backend, Scheduler())

    async def scenario() -> list[str]:
        with tenant_scope(Principal(address=None, key_id="k9")):
            in_thread = await anyio.to_thread.run_sync(lambda: model.stream(MESSAGES, PARAMS))
            in_task = await asyncio.create_task(_submit_async(model))
        outside = model.stream(MESSAGES, PARAMS)
        return [in_thread.tenant, in_task.tenant, outside.tenant]

    assert asyncio.run(scenario()) == ["key:k9", "key:k9", ANONYMOUS_TENANT]
    assert TENANT.get() == ANONYMOUS_TENANT
    copied = contextvars.copy_context()
    with tenant_scope(Principal(address=None, visitor_id="v")):
        seen: list[str] = []
        worker = threading.Thread(target=lambda: seen.append(TENANT.get()))
        worker.start()
        worker.join()
    # A bare thread starts from an empty context: why the tenant is read at submit time.
    assert seen == [ANONYMOUS_TENANT] and copied.run(TENANT.get) == ANONYMOUS_TENANT


async def _submit_async(model: ScheduledBackend) -> Ticket:
    return model.stream(MESSAGES, PARAMS)


def _stream_as(model: ScheduledBackend, tenant: str) -> Ticket:
    token = TENANT.set(tenant)
    try:
        return model.stream(MESSAGES, PARAMS)
    finally:
        TENANT.reset(token)


def test_a_light_tenant_finds_a_place_free_while_another_floods() -> None:
    """A tenant that asked lately and runs nothing keeps one place of the lane free: the
    flood cannot take them all, so the light tenant's next request starts at once. Once
    it has been quiet for ``RECENT_S`` the flood may use every place again."""
    from types import SimpleNamespace

    from agents.llm.fair_queue import RECENT_S, FairQueue

    now = [0.0]
    queue = FairQueue(clock=lambda: now[0])
    lane = SimpleNamespace(running=0, capacity=4)

    def start_all(key: str) -> int:
        started = 0
        while (ticket := queue.pop_next()) is not None:
            assert ticket.key == key
            lane.running += 1
            started += 1
        return started

    light = SimpleNamespace(lane=lane, key="light")
    queue.push("light", light)
    assert queue.pop_next() is light  # the light tenant asked once, and was served
    queue.finished("light")
    for _ in range(10):
        queue.push("flood", SimpleNamespace(lane=lane, key="flood"))
    assert start_all("flood") == 3  # one place stays free for the light tenant
    queue.push("light", light)
    assert queue.pop_next() is light  # and its next request starts at once
    lane.running += 1
    queue.finished("light")
    lane.running -= 1
    now[0] += RECENT_S + 1  # quiet for a while: the flood may take every place
    assert start_all("flood") == 1
    assert lane.running == lane.capacity


class NamedGates(GatedBackend):
    """Each request (named by its message) emits a token only when its own gate opens."""

    max_concurrency = 4

    def __init__(self) -> None:
        super().__init__(tokens=2)
        self.gates: dict[str, threading.Semaphore] = {}
        self.begun: list[str] = []

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        name = messages[-1].content
        gate = self.gates.setdefault(name, threading.Semaphore(0))
        self.begun.append(name)
        for i in range(self.tokens):
            assert gate.acquire(timeout=30), f"test never released {name}"
            yield f"{name}-{i} "

    def open(self, name: str, n: int = 1) -> None:
        gate = self.gates.setdefault(name, threading.Semaphore(0))
        for _ in range(n):
            gate.release()


def _ask(model: ScheduledBackend, tenant: str, name: str) -> Ticket:
    token = TENANT.set(tenant)
    try:
        return model.stream([ChatMessage(role="user", content=name)], PARAMS)
    finally:
        TENANT.reset(token)


def test_a_light_request_waiting_for_its_first_token_holds_back_the_flood() -> None:
    """While a light tenant's only request waits for its first token, a flooding tenant
    starts nothing more (its prompts would be computed in the same engine steps and delay
    that token); the first token lets the flood go on."""
    backend = NamedGates()
    model = ScheduledBackend(backend, Scheduler(max_queue=64, tenant_queue=0))
    flood = [_ask(model, "flood", f"f{i}") for i in range(6)]
    wait_until(lambda: len(backend.begun) == 4, message="the flood to fill the lane")
    light = _ask(model, "light", "light")  # waits: the lane is full
    backend.open("f0", 2)  # one flood request ends: its place goes to the light request
    wait_until(lambda: "light" in backend.begun, message="the light request to start")
    backend.open("f1", 2)  # another ends: the flood may not start a new one yet
    # Its place is freed and the queue dispatched under one lock: 3 running proves that no
    # flood request took the place (it would be 4 again).
    wait_until(lambda: model.scheduler.stats()["running"] == 3, message="f1's place to stay free")
    assert "f4" not in backend.begun and flood[4].state == "queued"
    backend.open("light")  # the light request's first token
    wait_until(lambda: "f4" in backend.begun, message="the flood to go on")
    backend.open("light")
    for name in ("f2", "f3", "f4", "f5"):
        backend.open(name, 2)
    assert "".join(light) == "light-0 light-1 "
    for ticket in flood:
        assert "".join(ticket).startswith("f")
