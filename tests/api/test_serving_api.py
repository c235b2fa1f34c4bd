"""Serving under load, through the real app, the real scheduler and the bundled model on the
llama.cpp engine: 429 when the queue is full, 503 while the model loads, disconnects cancel,
stalled readers never hold the model, and more waiters than server threads all finish (they
once deadlocked the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from agents.llm.pool import LLMPool
from container import Services, build_services
from core.principal import SYSTEM
from core.settings import Settings
from tests.fake_backends import SlowLoadingBackend
from tests.waiting import wait_until

pytestmark = pytest.mark.model

PARALLEL = 2
LONG = {"max_new_tokens": 600, "temperature": 0.0, "repetition_penalty": 1.0}
STORY = [{"role": "user", "content": "Tell me a very long story."}]


@pytest.fixture(scope="module")
def serving_pool(
    model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LLMPool]:
    """The bundled model on the llama.cpp engine with 2 slots, shared by this module."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("serving-pool"),
        model_cache_dir=model_cache_dir,
        llm_preload=False,
        llm_engine="llamacpp",
        llm_parallel=PARALLEL,
        llm_kv_tokens=8192,
        llm_threads=1,  # robust on a busy shared machine; the engine batches either way
    )
    pool = LLMPool(settings)
    pool.get().load()
    yield pool
    for engine in pool._engines.values():
        engine.unload()


@pytest.fixture
def services(settings: Settings, serving_pool: LLMPool) -> Iterator[Services]:
    serving_pool.scheduler.max_queue = 2
    serving_pool.scheduler.stream_buffer = 1024
    svc = build_services(settings, llm=serving_pool)
    yield svc
    svc.close()
    _wait_idle(serving_pool)


def _wait_idle(pool: LLMPool, timeout: float = 60) -> None:
    wait_until(
        lambda: pool.scheduler.stats() == {"queued": 0, "running": 0},
        timeout=timeout,
        message=lambda: f"the scheduler to be idle: {pool.scheduler.stats()}",
    )


def _agent(services: Services, **generation: object) -> str:
    return services.agents.create_agent(
        {"name": "Ada", "description": "A storyteller.", "generation": generation or LONG},
        principal=SYSTEM,
    ).id


def _open_stream(
    client: httpx.Client, base: str, agent: str
) -> tuple[httpx.Response, Iterator[str]]:
    """A streaming completion that has produced its first piece of text."""
    request = client.build_request(
        "POST",
        f"{base}/v1/chat/completions",
        json={"model": agent, "messages": STORY, "stream": True},
    )
    resp = client.send(request, stream=True)
    assert resp.status_code == 200, resp.read()
    lines = resp.iter_lines()
    for line in lines:
        if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
            break
    return resp, lines


def test_full_queue_is_429_with_retry_after_and_disconnects_cancel(
    live_server: str, services: Services, serving_pool: LLMPool
) -> None:
    agent = _agent(services)
    sched = serving_pool.scheduler
    with httpx.Client(timeout=120) as client:
        # (keep each line iterator: dropping one closes its response, i.e. disconnects)
        running = [_open_stream(client, live_server, agent) for _ in range(PARALLEL)]
        assert sched.stats() == {"queued": 0, "running": PARALLEL}

        # Two more wait: one streaming, one not (each on its own connection).
        queued_stream = client.send(
            client.build_request(
                "POST",
                f"{live_server}/v1/chat/completions",
                json={"model": agent, "messages": STORY, "stream": True},
            ),
            stream=True,
        )
        waiter = threading.Thread(target=lambda: _post_and_hang_up(live_server, agent), daemon=True)
        waiter.start()
        wait_until(lambda: sched.stats()["queued"] == 2, message=sched.stats)

        # The queue is full: refused at once, OpenAI error shape, Retry-After.
        started = time.monotonic()
        full = client.post(
            f"{live_server}/v1/chat/completions", json={"model": agent, "messages": STORY}
        )
        assert time.monotonic() - started < 5
        assert full.status_code == 429
        assert int(full.headers["Retry-After"]) >= 1
        error = full.json()["error"]
        assert error["code"] == 429 and error["type"] == "QueueFullError"
        assert "ANIMA_LLM_QUEUE_SIZE" in error["message"]
        with pytest.raises(openai.RateLimitError):
            openai.OpenAI(
                base_url=f"{live_server}/v1", api_key="x", max_retries=0
            ).chat.completions.create(model=agent, messages=STORY)  # type: ignore[arg-type]

        # A queued streaming client leaves: its place is freed without it ever running.
        queued_stream.close()
        waiter.join(timeout=30)  # the non-streaming one hung up after 1 s
        wait_until(lambda: sched.stats()["queued"] == 0, message=sched.stats)
        assert sched.stats()["running"] == PARALLEL

        # Running clients leave: their generations stop long before 600 tokens.
        for resp, _lines in running:
            resp.close()
        _wait_idle(serving_pool, timeout=30)


def _post_and_hang_up(base: str, agent: str) -> None:
    """A non-streaming request whose client gives up after one second."""
    with contextlib.suppress(httpx.TimeoutException):
        httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": agent, "messages": STORY},
            timeout=1.0,
        )


def test_stalled_readers_do_not_block_the_next_request(
    live_server: str, services: Services, serving_pool: LLMPool
) -> None:
    agent = _agent(services, max_new_tokens=48, temperature=0.0, repetition_penalty=1.0)
    with httpx.Client(timeout=120) as client:
        # Both slots taken by clients that read one piece and then stop reading.
        stalled = [_open_stream(client, live_server, agent) for _ in range(PARALLEL)]
        started = time.monotonic()
        other = client.post(
            f"{live_server}/v1/chat/completions",
            json={"model": agent, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
        )
        assert other.status_code == 200, other.text
        assert other.json()["choices"][0]["message"]["content"].strip()
        assert time.monotonic() - started < 90
        # The stalled replies were generated into their buffers; reading later gets them whole.
        for resp, lines in stalled:
            rest = [line for line in lines if line]
            assert rest[-1] == "data: [DONE]"
            assert '"finish_reason": "length"' in rest[-2]  # all 48 tokens, none lost
            resp.close()


def test_more_waiters_than_server_threads_all_finish(
    live_server: str, services: Services, serving_pool: LLMPool
) -> None:
    """48 streams of 16 tokens once hung the server for good (it had 40 worker threads)."""
    serving_pool.scheduler.max_queue = 64
    agent = _agent(services, max_new_tokens=4, temperature=0.0)

    async def scenario() -> tuple[list[int], list[int], list[float]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:

            async def stream(i: int) -> int:
                body = {
                    "model": agent,
                    "messages": [{"role": "user", "content": f"Say hi to guest {i}."}],
                    "stream": True,
                }
                async with client.stream(
                    "POST", f"{live_server}/v1/chat/completions", json=body
                ) as resp:
                    lines = [line async for line in resp.aiter_lines() if line]
                assert lines[-1] == "data: [DONE]", lines[-6:]
                assert not any('"error"' in line for line in lines)
                return resp.status_code

            async def plain(i: int) -> int:
                body = {"model": agent, "messages": [{"role": "user", "content": f"Hello {i}"}]}
                resp = await client.post(f"{live_server}/v1/chat/completions", json=body)
                return resp.status_code

            health: list[float] = []

            async def poll() -> None:
                while True:
                    started = time.perf_counter()
                    resp = await client.get(f"{live_server}/api/health")
                    assert resp.status_code == 200
                    health.append(time.perf_counter() - started)
                    await asyncio.sleep(0.2)

            poller = asyncio.create_task(poll())
            streams = await asyncio.gather(*(stream(i) for i in range(30)))
            plains = await asyncio.gather(*(plain(i) for i in range(20)))
            poller.cancel()
            return streams, plains, health

    streams, plains, health = asyncio.run(scenario())
    assert streams == [200] * 30 and plains == [200] * 20
    assert health  # /api/health kept answering throughout (bench/load.py times it)


def test_requests_while_the_model_loads_get_503(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from app import create_app

    model = SlowLoadingBackend(reply="Hello there")
    pool = LLMPool(settings, default=model)
    svc = build_services(settings, llm=pool)
    try:
        agent = _agent(svc, max_new_tokens=4)
        loader = threading.Thread(target=pool.get().load, daemon=True)
        loader.start()
        assert model.loading.wait(timeout=30), "the load never started"
        with TestClient(create_app(services=svc)) as client:
            resp = client.post(
                "/v1/chat/completions",
                json={"model": agent, "messages": [{"role": "user", "content": "Hi"}]},
            )
            assert resp.status_code == 503, resp.text
            assert int(resp.headers["Retry-After"]) >= 1
            assert resp.json()["error"]["type"] == "ModelLoadingError"
            model.finish_loading.set()
            loader.join(timeout=30)
            assert not loader.is_alive() and model.is_loaded
            again = client.post(
                "/v1/chat/completions",
                json={"model": agent, "messages": [{"role": "user", "content": "Hi"}]},
            )
            assert again.status_code == 200, again.text
            assert again.json()["choices"][0]["message"]["content"] == "Hello there"
    finally:
        model.finish_loading.set()
        svc.close()


def test_health_reports_queued_and_running(live_server: str, services: Services) -> None:
    body = httpx.get(f"{live_server}/api/health", timeout=10).json()
    assert body["status"] == "ok"
    assert body["llm_requests"] == {"queued": 0, "running": 0}
