"""Benchmark: many concurrent streaming chats against the running app.

Starts the app (``python app.py`` in a fresh data directory, on a free port) as its own
process, creates one agent, then for each level N opens N streaming
``/v1/chat/completions`` at once while polling ``/api/health``. Prints, per level:
completed / failed / 429, time to first token p50 / p95, aggregate tokens/s (completion
tokens of every stream over the level's wall time) and health p99. A level that does not
finish within ``--timeout`` is reported as hung and the server is restarted for the next.

    .venv/bin/python bench/load.py                       # levels 1, 8, 32, 64; 64 tokens
    .venv/bin/python bench/load.py --levels 48 --tokens 16 --timeout 240
    .venv/bin/python bench/load.py --app-dir /tmp/anima-main   # another checkout (before/after)
    .venv/bin/python bench/load.py --engine transformers       # ANIMA_LLM_ENGINE for the app
    .venv/bin/python bench/load.py --fairness --tokens 16      # one tenant floods, one waits

The fairness run serves two tenants (two API keys, each of its own local wallet): one keeps
``--flood`` streams open without pause while the other sends one request a second. It reports
the second tenant's time to first token alone and under the flood, once with
``ANIMA_LLM_SCHEDULING=fair`` and once with ``fifo``, in one table: fair scheduling keeps the
second tenant's p95 near its unloaded value, FIFO makes it wait behind the whole flood.

Every stream asks a different question, so replies are not served from a cache. The machine's
load moves absolute numbers a lot on 2 shared cores: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class StreamOutcome:
    status: str  # "ok" | "429" | "failed"
    ttft_s: float | None = None
    tokens: int = 0
    detail: str = ""


@dataclass
class LevelResult:
    streams: int
    outcomes: list[StreamOutcome] = field(default_factory=list)
    wall_s: float = 0.0
    hung: bool = False
    health_ms: list[float] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


class AppProcess:
    """``python app.py`` in its own process group, killed (with its children) on stop."""

    def __init__(self, app_dir: Path, env: dict[str, str]) -> None:
        self.app_dir = app_dir
        self.env = env
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        fd, self.log_path = tempfile.mkstemp(prefix="anima-load-", suffix=".log")
        self.log = os.fdopen(fd, "wb")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> None:
        self.port = _free_port()
        env = {**self.env, "ANIMA_PORT": str(self.port), "ANIMA_LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=self.app_dir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited; see {self.log_path}")
            try:
                if httpx.get(f"{self.base}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the app did not start in {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


def _create_agent(base: str, tokens: int) -> str:
    resp = httpx.post(
        f"{base}/api/agents",
        json={
            "name": "Luna",
            "description": "{{char}} is a cheerful cat who loves telling stories.",
            "personality": "playful, curious",
            "scenario": "{{user}} visits Luna's sunny garden.",
            "generation": {"max_new_tokens": tokens, "temperature": 0.0},
        },
        timeout=60,
    )
    resp.raise_for_status()
    return resp.json()["id"]


def _warm_up(base: str, agent: str, timeout: float = 300) -> None:
    """One short reply, retried while the model loads (503) or the server is busy."""
    deadline = time.monotonic() + timeout
    body = {"model": agent, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    while time.monotonic() < deadline:
        try:
            resp = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=timeout)
            if resp.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("the model never answered the warm-up request")


async def _one_stream(
    client: httpx.AsyncClient,
    base: str,
    agent: str,
    index: int,
    tokens: int,
    headers: dict[str, str] | None = None,
) -> StreamOutcome:
    body = {
        "model": agent,
        "messages": [
            {"role": "user", "content": f"Tell me story number {index} about your garden."}
        ],
        "stream": True,
        "max_tokens": tokens,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft: float | None = None
    usage_tokens = 0
    pieces = 0
    try:
        async with client.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers=headers
        ) as resp:
            if resp.status_code == 429:
                await resp.aread()
                return StreamOutcome("429", detail=resp.headers.get("retry-after", ""))
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")[:200]
                return StreamOutcome("failed", detail=f"HTTP {resp.status_code} {text}")
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return StreamOutcome("failed", ttft, pieces, str(chunk["error"])[:200])
                if chunk.get("usage"):
                    usage_tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    if choice["delta"].get("content"):
                        pieces += 1
                        if ttft is None:
                            ttft = time.perf_counter() - started
    except httpx.HTTPError as exc:
        return StreamOutcome("failed", ttft, pieces, f"{type(exc).__name__}: {exc}")
    return StreamOutcome("ok", ttft, usage_tokens or pieces)


async def _poll_health(base: str, stop: asyncio.Event, out: list[float]) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await client.get(f"{base}/api/health")
                out.append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError:
                out.append(5000.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.1)


async def _run_level(base: str, agent: str, n: int, tokens: int, timeout: float) -> LevelResult:
    result = LevelResult(streams=n)
    stop = asyncio.Event()
    health = asyncio.create_task(_poll_health(base, stop, result.health_ms))
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as client:
        started = time.perf_counter()
        tasks = [asyncio.create_task(_one_stream(client, base, agent, i, tokens)) for i in range(n)]
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        result.wall_s = time.perf_counter() - started
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        result.hung = bool(pending)
        for task in tasks:
            if task in done and task.exception() is None:
                result.outcomes.append(task.result())
            else:
                result.outcomes.append(StreamOutcome("failed", detail="no answer in time"))
    stop.set()
    await health
    return result


# ----- the fairness run ---------------------------------------------------------------------


def _tenant_key(base: str, name: str) -> str:
    """A new local wallet signs in (its session cookie) and makes an API key: one tenant."""
    with httpx.Client(base_url=base, timeout=60) as client:
        client.post("/api/auth/local-wallets", json={"password": f"pw-{name}"}).raise_for_status()
        made = client.post("/api/auth/keys", json={"name": name})
        made.raise_for_status()
        return made.json()["key"]


async def _paced(
    base: str, agent: str, key: str, tokens: int, count: int, first: int
) -> list[StreamOutcome]:
    """``count`` streams, one a second, each on its own (questions ``first``...)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(300)) as client:
        tasks = []
        for i in range(count):
            tasks.append(
                asyncio.create_task(_one_stream(client, base, agent, first + i, tokens, headers))
            )
            await asyncio.sleep(1.0)
        return list(await asyncio.gather(*tasks))


async def _flood(
    base: str, agent: str, key: str, tokens: int, streams: int, stop: asyncio.Event
) -> dict[str, int]:
    """``streams`` clients that each ask again as soon as a reply ends; refused (429), they
    wait as the server's ``Retry-After`` says (at most 10 s), as the ``openai`` package does."""
    headers = {"Authorization": f"Bearer {key}"}
    counts = {"ok": 0, "429": 0, "failed": 0}
    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=streams + 4)

    async def client_loop(client: httpx.AsyncClient, worker: int) -> None:
        i = 0
        while not stop.is_set():
            outcome = await _one_stream(
                client, base, agent, 10_000 + worker * 1000 + i, tokens, headers
            )
            counts[outcome.status] += 1
            i += 1
            if outcome.status != "ok":
                pause = float(outcome.detail) if outcome.detail.isdigit() else 1.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=min(10.0, max(1.0, pause)))

    async with httpx.AsyncClient(timeout=httpx.Timeout(300), limits=limits) as client:
        workers = [asyncio.create_task(client_loop(client, w)) for w in range(streams)]
        await stop.wait()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return counts


@dataclass
class FairnessResult:
    scheduling: str
    alone: list[StreamOutcome]
    flooded: list[StreamOutcome]
    flood: dict[str, int]
    load: str


async def _fairness_phases(
    base: str, agent: str, keys: tuple[str, str], args: argparse.Namespace
) -> tuple[list[StreamOutcome], list[StreamOutcome], dict[str, int]]:
    flooder, light = keys
    alone = await _paced(base, agent, light, args.tokens, args.requests, 0)
    stop = asyncio.Event()
    flood = asyncio.create_task(_flood(base, agent, flooder, args.tokens, args.flood, stop))
    await asyncio.sleep(args.flood_warmup)  # the flood fills every slot and the queue first
    flooded = await _paced(base, agent, light, args.tokens, args.requests, 100)
    stop.set()
    return alone, flooded, await flood


def _fairness(args: argparse.Namespace, env: dict[str, str]) -> list[FairnessResult]:
    results = []
    for scheduling in ("fair", "fifo"):
        app = AppProcess(
            args.app_dir.resolve(),
            {**env, "ANIMA_LLM_SCHEDULING": scheduling, "ANIMA_KEYSTORE_SCRYPT_N": "16"},
        )
        try:
            app.start()
            agent = _create_agent(app.base, args.tokens)
            keys = (_tenant_key(app.base, "flood"), _tenant_key(app.base, "light"))
            _warm_up(app.base, agent)
            load = _load()
            alone, flooded, flood = asyncio.run(_fairness_phases(app.base, agent, keys, args))
            results.append(FairnessResult(scheduling, alone, flooded, flood, load))
            print(f"  {scheduling}: done (flood {flood})", file=sys.stderr, flush=True)
        finally:
            app.stop()
            app.log.close()
            os.unlink(app.log_path)
    return results


def _ttfts(outcomes: list[StreamOutcome]) -> list[float]:
    return [o.ttft_s for o in outcomes if o.status == "ok" and o.ttft_s is not None]


def _print_fairness(results: list[FairnessResult], args: argparse.Namespace) -> None:
    print(
        f"fairness: one key floods with {args.flood} streams, another sends one request a "
        f"second ({args.requests} alone, {args.requests} under the flood); "
        f"{args.tokens}-token replies, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| scheduling | alone TTFT p50 / p95 s | flooded TTFT p50 / p95 s | p95 flooded / alone "
        "| light ok / failed | flood replies / 429 | load (1/5/15 min) |"
    )
    print("|---|---|---|---|---|---|---|")
    p95: dict[str, float] = {}
    for r in results:
        alone, flooded = _ttfts(r.alone), _ttfts(r.flooded)
        p95[r.scheduling] = _percentile(flooded, 95)
        light_failed = sum(1 for o in r.alone + r.flooded if o.status != "ok")
        print(
            f"| {r.scheduling} | {statistics.median(alone) if alone else float('nan'):.2f} / "
            f"{_percentile(alone, 95):.2f} | "
            f"{statistics.median(flooded) if flooded else float('nan'):.2f} / "
            f"{_percentile(flooded, 95):.2f} | "
            f"{_percentile(flooded, 95) / _percentile(alone, 95):.1f}x | "
            f"{len(alone) + len(flooded)} / {light_failed} | "
            f"{r.flood['ok']} / {r.flood['429']} | {r.load} |"
        )
    if "fair" in p95 and "fifo" in p95 and p95["fair"] > 0:
        print()
        print(f"flooded p95, fifo / fair: {p95['fifo'] / p95['fair']:.1f}x")
    failures = {
        f"{r.scheduling}: {o.status} {o.detail}"
        for r in results
        for o in r.alone + r.flooded
        if o.status != "ok"
    }
    if failures:
        print("light tenant failures: " + "; ".join(sorted(failures)[:5]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,32,64", help="comma-separated stream counts")
    parser.add_argument("--tokens", type=int, default=64, help="max tokens per reply")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per level")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="checkout to serve")
    parser.add_argument("--engine", default=None, help="ANIMA_LLM_ENGINE for the app")
    parser.add_argument("--threads", type=int, default=None, help="ANIMA_LLM_THREADS")
    parser.add_argument(
        "--model-cache",
        type=Path,
        default=ROOT / "data" / "models",
        help="converted-model cache shared between runs (ANIMA_MODEL_CACHE_DIR)",
    )
    parser.add_argument("--fairness", action="store_true", help="the two-tenant fairness run")
    parser.add_argument("--flood", type=int, default=64, help="fairness: the flood's streams")
    parser.add_argument(
        "--requests", type=int, default=15, help="fairness: light requests alone, then flooded"
    )
    parser.add_argument(
        "--flood-warmup", type=float, default=5.0, help="fairness: seconds of flood first"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]

    with tempfile.TemporaryDirectory(prefix="anima-load-") as tmp:
        env = {
            **os.environ,
            "ANIMA_DATA_DIR": tmp,
            "ANIMA_MODEL_CACHE_DIR": str(args.model_cache.resolve()),
            "ANIMA_LLM_PRELOAD": "true",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
        }
        if args.engine:
            env["ANIMA_LLM_ENGINE"] = args.engine
        if args.threads:
            env["ANIMA_LLM_THREADS"] = str(args.threads)
        if args.fairness:
            _print_fairness(_fairness(args, env), args)
            return
        app = AppProcess(args.app_dir.resolve(), env)
        results: list[LevelResult] = []
        loads: list[str] = []
        try:
            app.start()
            agent = _create_agent(app.base, args.tokens)
            _warm_up(app.base, agent)
            for n in levels:
                loads.append(_load())
                result = asyncio.run(_run_level(app.base, agent, n, args.tokens, args.timeout))
                results.append(result)
                print(
                    f"  {n} streams: {result.count('ok')} ok, {result.count('429')} 429, "
                    f"{result.count('failed')} failed in {result.wall_s:.1f} s"
                    + (" (HUNG: server restarted)" if result.hung else ""),
                    file=sys.stderr,
                    flush=True,
                )
                if result.hung:
                    app.stop()
                    app.start()
                    _create_agent(app.base, args.tokens)
                    agent = httpx.get(f"{app.base}/api/agents").json()[0]["id"]
                    _warm_up(app.base, agent)
        finally:
            app.stop()
            app.log.close()
            os.unlink(app.log_path)

    print(
        f"app {args.app_dir.resolve()}, engine {args.engine or 'default'}, "
        f"{args.tokens}-token replies, {os.cpu_count()} CPUs, timeout {args.timeout:.0f} s/level"
    )
    print()
    print(
        "| streams | completed | failed | 429 | TTFT p50 s | TTFT p95 s | aggregate tok/s "
        "| health p99 ms | load (1/5/15 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for result, load in zip(results, loads, strict=True):
        ok = [o for o in result.outcomes if o.status == "ok"]
        ttfts = [o.ttft_s for o in ok if o.ttft_s is not None]
        tokens = sum(o.tokens for o in result.outcomes if o.status == "ok")
        rate = tokens / result.wall_s if result.wall_s > 0 and not result.hung else 0.0
        hung = " (hung)" if result.hung else ""
        print(
            f"| {result.streams} | {len(ok)}{hung} | {result.count('failed')} | "
            f"{result.count('429')} | {statistics.median(ttfts) if ttfts else float('nan'):.2f} | "
            f"{_percentile(ttfts, 95):.2f} | {rate:.0f} | "
            f"{_percentile(result.health_ms, 99):.0f} | {load} |"
        )
    failures = {o.detail for r in results for o in r.outcomes if o.status == "failed"}
    if failures:
        print()
        print("failures: " + "; ".join(sorted(failures)[:5]))


if __name__ == "__main__":
    main()
