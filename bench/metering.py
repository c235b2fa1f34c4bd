"""Benchmark: what usage metering costs, as tokens/s with metering on and off in one run.

Serves the app in this process (uvicorn in a thread, a fresh data directory, the default
model), creates one agent and an API key with limits (so the key checks run as they do for
a developer), then alternates rounds with metering on and off: each round opens ``--streams``
streaming ``/v1/chat/completions`` at once and counts completion tokens over the round's wall
time. Alternating rounds cancels most of the drift of a busy machine. Prints the median
tokens/s of each mode, how far apart they are (target: at most 2 %), and how the batched
writer flushed while metering was on (batches a second, records per batch).

Metering is switched by ``UsageService.enabled``, the in-process form of
``ANIMA_USAGE_METERING=false``: that setting exists only for this comparison.

    .venv/bin/python bench/metering.py                  # 6 rounds per mode, 4 streams, 48 tokens
    .venv/bin/python bench/metering.py --rounds 10 --streams 8 --tokens 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chain.api_keys import KeyLimits  # noqa: E402
from container import Services, build_services  # noqa: E402
from core.principal import SYSTEM, Principal  # noqa: E402
from core.settings import Settings  # noqa: E402

QUESTIONS = [
    "What bread do you bake?",
    "Tell me about your morning.",
    "Which flour is best?",
    "Why do you get up so early?",
    "What is your favourite cake?",
    "How long does dough rise?",
    "Who buys your bread?",
    "What do you do on Sundays?",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(services: Services) -> tuple[str, uvicorn.Server]:
    from app import create_app

    port = _free_port()
    app = create_app(services=services)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the app did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


async def _stream(http: httpx.AsyncClient, base: str, key: str, agent: str, q: str, n: int) -> int:
    body = {
        "model": agent,
        "messages": [{"role": "user", "content": q}],
        "stream": True,
        "max_tokens": n,
        "temperature": 0.7,
        "stream_options": {"include_usage": True},
    }
    tokens = 0
    async with http.stream(
        "POST", f"{base}/v1/chat/completions", json=body, headers={"X-API-Key": key}
    ) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:  # the last chunk (include_usage)
                    tokens = int(usage.get("completion_tokens") or 0)
    return tokens


async def _round(base: str, key: str, agent: str, streams: int, tokens: int, seed: int) -> float:
    async with httpx.AsyncClient(timeout=600) as http:
        started = time.perf_counter()
        counts = await asyncio.gather(
            *(
                _stream(http, base, key, agent, QUESTIONS[(seed + i) % len(QUESTIONS)], tokens)
                for i in range(streams)
            )
        )
        return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per mode (alternating)")
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams per round")
    parser.add_argument("--tokens", type=int, default=48, help="max tokens per reply")
    parser.add_argument(
        "--model-cache", type=Path, default=ROOT / "data" / "models", help="converted models"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="anima-metering-") as tmp:
        settings = Settings(
            data_dir=tmp,
            model_cache_dir=args.model_cache.resolve(),
            llm_preload=False,
            chain="eth-tester",
        )
        services = build_services(settings)
        services.chain.start(follow=False)
        base, server = _serve(services)
        try:
            agent = services.agents.create_agent(
                {"name": "Bram", "description": "A grumpy baker."}, principal=SYSTEM
            ).id
            owner = Principal(address="0x" + "ab" * 20, via="session")
            key = services.auth.create_api_key(
                "bench", KeyLimits(rpm=100_000, tpm=100_000_000), principal=owner
            ).key
            asyncio.run(_round(base, key, agent, 1, 8, 0))  # load the model
            rates: dict[bool, list[float]] = {True: [], False: []}
            writer = services.usage.writer
            metered_s, flushes_before, rows_before = 0.0, writer.flushes, _rows(services)
            for r in range(args.rounds * 2):
                metering = r % 2 == 0
                services.usage.enabled = metering
                started = time.perf_counter()
                rate = asyncio.run(_round(base, key, agent, args.streams, args.tokens, r))
                if metering:
                    metered_s += time.perf_counter() - started
                rates[metering].append(rate)
                print(
                    f"  round {r + 1}: metering {'on ' if metering else 'off'} {rate:7.1f} tok/s",
                    file=sys.stderr,
                    flush=True,
                )
            services.usage.flush()
            flushes = writer.flushes - flushes_before
            rows = _rows(services) - rows_before
            record_us, flush_us = _cost_per_record(services)
        finally:
            server.should_exit = True
            time.sleep(0.5)
            services.close()

    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    apart = abs(on - off) / off * 100 if off else float("nan")
    print()
    print(
        f"metering overhead: {args.rounds} rounds per mode, {args.streams} streams, "
        f"{args.tokens} max tokens, load average {os.getloadavg()[0]:.2f}"
    )
    print("| metering | median tok/s | min | max |")
    print("|---|---|---|---|")
    for mode, values in (("on", rates[True]), ("off", rates[False])):
        print(
            f"| {mode} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |"
        )
    print(f"\napart: {apart:.2f} % (target: at most 2 %)")
    print(
        f"flushes: {flushes} batches in {metered_s:.1f} s metered "
        f"({flushes / metered_s if metered_s else 0:.2f}/s), {rows} records "
        f"({rows / flushes if flushes else 0:.1f} per batch), "
        f"writer failures: {services.usage.writer.failures}"
    )
    round_s = args.streams * args.tokens / on if on else float("nan")
    share = (record_us + flush_us) * args.streams / 1e6 / round_s * 100
    print(
        f"cost per record: {record_us:.1f} us on the request thread, {flush_us:.1f} us in the "
        f"writer's batch: {share:.4f} % of a round ({round_s:.1f} s for {args.streams} replies)"
    )


def _cost_per_record(services: Services, n: int = 5000) -> tuple[float, float]:
    """Microseconds per record: queuing it (the request's share) and writing it in a batch
    (the writer thread's share). Steady figures, unlike tokens/s on a shared machine."""
    caller = Principal(address="0x" + "cd" * 20, via="api_key", key_id="bench-key")
    services.usage.enabled = True
    services.usage.flush()
    started = time.perf_counter()
    for _ in range(n):
        services.usage.record(
            principal=caller,
            agent_id="bench",
            route="v1.chat",
            prompt_tokens=20,
            completion_tokens=30,
            latency_s=0.5,
        )
    queued = time.perf_counter()
    services.usage.flush()
    # The writer's share, timed on a batch of its own (its thread may have taken part of the
    # records above while they were queued).
    batch = [{**row, "id": f"bench-{i}"} for i, row in enumerate([_sample_row()] * n)]
    written = time.perf_counter()
    services.usage.writer._write(batch)
    done = time.perf_counter()
    return (queued - started) / n * 1e6, (done - written) / n * 1e6


def _sample_row() -> dict[str, object]:
    from datetime import UTC, datetime

    return {
        "created_at": datetime.now(UTC),
        "key_id": "bench-key",
        "address": None,
        "visitor_id": None,
        "agent_id": "bench",
        "route": "v1.chat",
        "prompt_tokens": 20,
        "completion_tokens": 30,
        "audio_seconds": 0.0,
        "latency_ms": 500,
        "outcome": "ok",
    }


def _rows(services: Services) -> int:
    from sqlalchemy import func, select

    from usage.records import UsageRecord

    with services.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(UsageRecord)) or 0)


if __name__ == "__main__":
    main()
