"""Benchmark: the local engines side by side, and the served ``/v1/chat/completions`` path.

For each engine (transformers, llama.cpp on the shipped Q4_1 GGUF, and llama.cpp on a float32
GGUF it converts from the Hugging Face folder) it measures, greedy, medians of ``--runs``:

- TTFT and decode rate on a short prompt, and the decode rate with a LoRA adapter active;
- a persona of about 1.5k tokens: TTFT of a cold first turn, then of the second turn (the
  persona prefix cached where the engine can);
- 8 concurrent streams through the scheduler: aggregate tokens/s and the ratio to one stream;
- how many of the first 32 greedy tokens equal transformers' in float32 (5 prompts);
- resident memory of the engine with 10 adapters loaded, against the base model alone.

Then the served path (``/v1/chat/completions`` over HTTP, default engine) for the API's cost,
beside the raw engine (the same GGUF and threads through ``xllamacpp`` directly, no Anima
code): single-stream decode rates and their ratio. And persona warming: the first token of a
new chat with an agent whose card is about 1.4k tokens, cold (warming off), warmed (the
agent saved with warming on) and warmed after a restart (a new engine restoring the file),
with the disk the warmed prefix takes.

    .venv/bin/python bench/llm.py [--runs 3] [--tokens 64] [--threads N]
    .venv/bin/python bench/llm.py --engines llamacpp,llamacpp-q4_0   # a subset
    .venv/bin/python bench/llm.py --engines none --runs 1   # only raw/served and warming

Adapters are random peft LoRAs (r=8, q/k/v/o) made here. The machine's load moves absolute
numbers a lot on 2 shared cores: the load average is printed; compare ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn

from agents.llm.base import StreamResult
from agents.llm.model_source import resolve_model
from agents.llm.pool import LLMPool
from agents.schema import ChatMessage, GenerationSettings
from core.principal import SYSTEM
from core.settings import Settings

QUESTION = "Tell me a very long story."
PROMPTS = [
    "Tell me about your favourite place to nap.",
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "How do I bake bread?",
    "Describe your best friend.",
]
PERSONA_LINES = [
    "{{char}} is a cheerful cat who lives in a sunny garden behind an old library.",
    "She loves telling stories about the mice, the birds and the gardener's dog.",
    "Her favourite food is grilled fish, and she hates the rain more than anything.",
    "She speaks in short, playful sentences and often purrs in the middle of a word.",
    "Every evening she climbs the apple tree to watch the sun set over the river.",
]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _persona(tag: str, repeats: int = 16) -> str:
    lines = [f"Persona version {tag}."] + PERSONA_LINES * repeats
    return " ".join(lines).replace("{{char}}", "Luna")


def _timed(backend: Any, messages: list[ChatMessage], params: GenerationSettings) -> dict:
    result = StreamResult()
    started = time.perf_counter()
    first = last = None
    for _ in backend.stream(messages, params, result):
        now = time.perf_counter()
        first = first if first is not None else now
        last = now
    tokens = result.completion_tokens
    span = (last - first) if first is not None and last is not None else 0.0
    return {
        "ttft": (first - started) if first is not None else float("nan"),
        "rate": (tokens - 1) / span if span > 0 and tokens > 1 else float("nan"),
        "tokens": tokens,
        "cached": result.cached_tokens,
        "wall": time.perf_counter() - started,
    }


def _median(samples: list[dict], key: str) -> float:
    values = [s[key] for s in samples if s[key] == s[key]]
    return statistics.median(values) if values else float("nan")


def _make_adapters(hf_dir: Path, out: Path, count: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    for i in range(count):
        if (out / f"ad{i}" / "adapter_model.safetensors").is_file():
            continue
        torch.manual_seed(100 + i)
        base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        config = LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
        )
        get_peft_model(base, config).save_pretrained(out / f"ad{i}")
        del base
        gc.collect()


def _agreement(text: str, ref_ids: list[int], tokenizer: Any) -> int:
    """How many of the reference's first tokens the text reproduces exactly."""
    n = 0
    for k in range(1, len(ref_ids) + 1):
        if text.startswith(tokenizer.decode(ref_ids[:k], skip_special_tokens=True)):
            n = k
        else:
            break
    return n


def reference_ids(hf_dir: Path) -> tuple[Any, dict[str, list[int]]]:
    """transformers float32 greedy token ids (32) for each agreement prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    refs = {}
    for prompt in PROMPTS:
        messages = [
            {"role": "system", "content": "You are Luna, a cheerful cat who loves stories."},
            {"role": "user", "content": prompt},
        ]
        enc = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out = model.generate(**enc, max_new_tokens=32, do_sample=False, repetition_penalty=1.0)
        refs[prompt] = out[0, enc["input_ids"].shape[1] :].tolist()
    del model
    gc.collect()
    return tokenizer, refs


def measure_engine(
    name: str, settings: Settings, args: argparse.Namespace, refs: Any
) -> dict[str, Any]:
    pool = LLMPool(settings)
    base = pool.get()
    t0 = time.perf_counter()
    base.load()
    load_s = time.perf_counter() - t0
    greedy = GenerationSettings(temperature=0.0, max_new_tokens=args.tokens, repetition_penalty=1.0)
    short = [
        ChatMessage(role="system", content="You are Luna, a cheerful cat who loves stories."),
        ChatMessage(role="user", content=QUESTION),
    ]
    _timed(base, short, greedy)  # warm-up
    plain = [_timed(base, short, greedy) for _ in range(args.runs)]
    adapted_backend = pool.get(None, "ad0")
    adapted_backend.load()
    _timed(adapted_backend, short, greedy)
    adapted = [_timed(adapted_backend, short, greedy) for _ in range(args.runs)]
    engine = getattr(adapted_backend.backend, "engine_name", "?")

    # 1.5k-token persona: cold first turn, then the second turn of the same chat.
    few = greedy.model_copy(update={"max_new_tokens": 16})
    cold, second = [], []
    persona_tokens = 0
    for run in range(args.runs):
        system = ChatMessage(role="system", content=_persona(f"{name}-{run}-{time.time()}"))
        persona_tokens = base.count_tokens(system.content)
        turn1 = [system, ChatMessage(role="user", content="Hello Luna!")]
        first = _timed(base, turn1, few)
        cold.append(first)
        reply = base.complete(turn1, few).text
        turn2 = [
            *turn1,
            ChatMessage(role="assistant", content=reply),
            ChatMessage(role="user", content="What did you do today?"),
        ]
        second.append(_timed(base, turn2, few))

    # 8 concurrent streams through the scheduler vs one.
    concurrent: list[dict] = []

    def one(i: int) -> None:
        messages = [short[0], ChatMessage(role="user", content=f"{QUESTION} Number {i}.")]
        concurrent.append(_timed(base, messages, greedy))

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    aggregate = sum(s["tokens"] for s in concurrent) / (time.perf_counter() - started)
    one_rate = _median(plain, "rate")

    # Greedy agreement with transformers float32 on the first 32 tokens.
    tokenizer, ref = refs
    agree = []
    g32 = greedy.model_copy(update={"max_new_tokens": 32})
    for prompt in PROMPTS:
        messages = [
            ChatMessage(role="system", content="You are Luna, a cheerful cat who loves stories."),
            ChatMessage(role="user", content=prompt),
        ]
        text = base.complete(messages, g32).text
        agree.append(f"{_agreement(text, ref[prompt], tokenizer)}/{len(ref[prompt])}")

    memory = _memory_in_subprocess(name, settings)
    result = {
        "engine": engine,
        "name": name,
        "load_s": load_s,
        "ttft": _median(plain, "ttft"),
        "rate": one_rate,
        "rate_adapter": _median(adapted, "rate"),
        "tokens": _median(plain, "tokens"),
        "persona_tokens": persona_tokens,
        "cold": _median(cold, "ttft"),
        "second": _median(second, "ttft"),
        "second_cached": _median(second, "cached"),
        "agg8": aggregate,
        "agg_ratio": aggregate / one_rate if one_rate == one_rate else float("nan"),
        "agree": agree,
        "rss_base": memory["base"],
        "rss_10": memory["adapters"],
    }
    for engine_obj in pool._engines.values():
        engine_obj.unload()
    for scheduled in pool._backends.values():
        for target in (scheduled.backend, getattr(scheduled.backend, "fallback", None)):
            unload = getattr(target, "unload", None)
            if callable(unload):
                unload()
    gc.collect()
    return result


def _memory_in_subprocess(name: str, settings: Settings) -> dict[str, float]:
    """Resident memory of a fresh process: the engine alone, then with 10 adapters loaded
    (in its own process so that what other engines left behind does not count)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--memory-of", settings.model_dump_json()],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"memory of {name} failed: {done.stderr[-500:]}", file=sys.stderr)
        return {"base": float("nan"), "adapters": float("nan")}
    return json.loads(lines[-1])


def memory_child(settings_json: str) -> None:
    settings = Settings.model_validate_json(settings_json)
    import transformers  # noqa: F401  (imported by both engines; not part of the model)

    gc.collect()
    before = _rss_mb()
    pool = LLMPool(settings)
    pool.get().load()
    gc.collect()
    base = _rss_mb() - before
    for i in range(10):
        pool.get(None, f"ad{i}").load()
    gc.collect()
    time.sleep(1)
    print(json.dumps({"base": base, "adapters": _rss_mb() - before}))


def measure_served(settings: Settings, tokens: int, runs: int) -> dict[str, float]:
    """Median TTFT and decode rate seen by an HTTP client streaming a chat completion."""
    from app import create_app
    from container import build_services

    services = build_services(settings)
    agent = services.agents.create_agent(
        {
            "name": "Luna",
            "description": "{{char}} is a cheerful cat who loves telling stories.",
            "generation": {"max_new_tokens": tokens, "temperature": 0.0, "repetition_penalty": 1.0},
        },
        principal=SYSTEM,
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(services=services), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    body = {
        "model": agent.id,
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def one_run(client: httpx.Client) -> tuple[float, float]:
        started = time.perf_counter()
        first = last = None
        n = 0
        with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    n = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    if choice["delta"].get("content"):
                        last = time.perf_counter()
                        first = first or last
        span = (last - first) if first and last else 0
        return (first - started) if first else float("nan"), (n - 1) / span if span else 0.0

    with httpx.Client(timeout=600) as client:
        one_run(client)
        samples = [one_run(client) for _ in range(runs)]
    server.should_exit = True
    thread.join(timeout=10)
    services.close()
    return {
        "ttft": statistics.median(s[0] for s in samples),
        "rate": statistics.median(s[1] for s in samples),
    }


def measure_raw(settings: Settings, tokens: int, runs: int) -> dict[str, float]:
    """Decode rate of the default engine's GGUF through ``xllamacpp`` alone (no Anima code
    on the path), with the threads the engine would use."""
    import xllamacpp as xlc

    from agents.llm.engine_source import resolve_engine_model
    from agents.llm.llamacpp_engine import engine_threads, prefill_threads

    params = xlc.CommonParams()
    params.model.path = str(resolve_engine_model(settings).gguf)
    params.n_parallel = 1
    params.n_ctx = 4096
    params.n_batch = 2048
    params.cache_ram_mib = 0
    params.verbosity = -1
    params.cpuparams.n_threads = engine_threads(settings)
    params.cpuparams_batch.n_threads = prefill_threads(settings)
    server = xlc.Server(params)
    body = {
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": tokens,
        "temperature": 0.0,
        "stream": True,
        "cache_prompt": False,
    }

    def one_run() -> tuple[float, float]:
        started = time.perf_counter()
        stamps: list[float] = []

        def on_chunk(chunk: Any) -> bool:
            for choice in (chunk or {}).get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    stamps.append(time.perf_counter())
            return False

        server.handle_chat_completions(body, on_chunk)
        span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
        return stamps[0] - started if stamps else float("nan"), (
            (len(stamps) - 1) / span if span else 0.0
        )

    one_run()
    samples = [one_run() for _ in range(runs)]
    return {
        "ttft": statistics.median(s[0] for s in samples),
        "rate": statistics.median(s[1] for s in samples),
    }


def _first_token_s(services: Any, agent_id: str, text: str) -> float:
    """Seconds to the first piece of a new chat's first reply (the chat service's path)."""
    started = time.perf_counter()
    pieces = iter(services.chat.complete(agent_id, [ChatMessage(role="user", content=text)]))
    first = float("nan")
    for piece in pieces:
        if piece:
            first = time.perf_counter() - started
            break
    for _ in pieces:  # the same stream to its end: its slot is free for the next phase
        pass
    return first


def _unload_all(services: Any) -> None:
    for engine in services.llm._engines.values():
        engine.unload()
    services.close()
    gc.collect()


def measure_warming(common: dict[str, Any], data_dir: Path) -> dict[str, float]:
    """First token of a new chat with a ~1.4k-token card: cold, warmed, warmed after restart.

    One sample each: a first chat is first only once per engine (a second new chat finds the
    prefix in a slot), and every sample would cost a model load."""
    from agents.llm.kv_cache import KVStore
    from container import build_services

    card = {
        "name": "Luna",
        "description": _persona("warming", repeats=15),
        "generation": {"max_new_tokens": 8, "temperature": 0.0, "repetition_penalty": 1.0},
    }
    out: dict[str, float] = {}

    def phase(label: str, warming: bool, fresh_dir: str, agent_id: str | None = None) -> str:
        settings = Settings(
            **{
                **common,
                "data_dir": data_dir / fresh_dir,
                "llm_preload": True,
                "llm_persona_warming": warming,
            }
        )
        services = build_services(settings)
        try:
            if agent_id is None:
                agent_id = services.agents.create_agent(card, principal=SYSTEM).id
                if services.warming is not None:
                    started = time.perf_counter()
                    services.warming.wait_idle(1800)
                    out["warm_s"] = time.perf_counter() - started
            services.llm.get().load()  # loaded before any chat, as with preloading
            out[label] = _first_token_s(services, agent_id, "Hello Luna!")
            store = KVStore.for_folder(settings.kv_cache_dir, settings.llm.kv_cache_mb)
            if store.entries():
                out["disk_mb"] = store.entries()[0].size / 1e6
                out["prefix_tokens"] = len(store.entries()[0].tokens)
        finally:
            _unload_all(services)
        return agent_id

    phase("cold", False, "cold")
    agent_id = phase("warmed", True, "warm")
    KVStore._stores.clear()  # a restart: nothing verified, nothing in memory
    phase("restarted", True, "warm", agent_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--engines", default="transformers,llamacpp,llamacpp-q4_0,llamacpp-f32")
    parser.add_argument("--threads", type=int, default=None, help="ANIMA_LLM_THREADS")
    parser.add_argument(
        "--model-cache",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "data" / "models",
        help="converted-model cache shared between runs",
    )
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        memory_child(args.memory_of)
        return
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())

    with tempfile.TemporaryDirectory(prefix="anima-bench-") as tmp:
        common = {
            "data_dir": Path(tmp),
            "model_cache_dir": args.model_cache.resolve(),
            "llm_preload": False,
            "llm_threads": args.threads,
        }
        engines = [n for n in args.engines.split(",") if n != "none"]
        hf_dir = Path(resolve_model(Settings(**common)).path) if engines else Path(tmp)
        if engines:
            _make_adapters(hf_dir, Path(tmp) / "adapters", 10)
        refs = reference_ids(hf_dir) if engines else None
        variants = {
            "transformers": {"llm_engine": "transformers"},
            "llamacpp": {"llm_engine": "llamacpp", "llm_engine_format": "source"},
            "llamacpp-q4_0": {"llm_engine": "llamacpp", "llm_engine_format": "q4_0"},
            "llamacpp-f32": {
                "llm_engine": "llamacpp",
                "llm_engine_format": "f32",
                "llm_model": str(hf_dir),
            },
        }
        rows = []
        for name in engines:
            settings = Settings(**{**common, **variants[name]})
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows.append(measure_engine(name, settings, args, refs))
        served = measure_served(Settings(**common), args.tokens, args.runs)
        print("measuring the raw engine ...", file=sys.stderr, flush=True)
        raw = measure_raw(Settings(**common), args.tokens, args.runs)
        print("measuring persona warming ...", file=sys.stderr, flush=True)
        warming = measure_warming(common, Path(tmp))

    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"bundled SmolLM2-135M-Instruct, {args.tokens}-token greedy replies, {args.runs} runs "
        f"after a warm-up, medians; {os.cpu_count()} CPUs; load {load_before} -> {load_after}"
    )
    print()
    print(
        "| engine | weights | load s | TTFT short s | decode tok/s | decode with adapter tok/s "
        "| persona TTFT cold s | second turn TTFT s (cached tokens) | 8 streams tok/s (x one) "
        "| tokens equal to transformers fp32 greedy (5 prompts) | RSS base / 10 adapters MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    weights = {
        "transformers": "bf16/fp32 (auto)",
        "llamacpp": "Q4_1 as shipped",
        "llamacpp-q4_0": "Q4_0 re-encoded",
        "llamacpp-f32": "f32",
    }
    for r in rows:
        agree = ", ".join(r["agree"])
        print(
            f"| {r['engine']} | {weights.get(r['name'], r['name'])} | {r['load_s']:.1f} | "
            f"{r['ttft']:.3f} | {r['rate']:.0f} | {r['rate_adapter']:.0f} | {r['cold']:.2f} | "
            f"{r['second']:.3f} ({r['second_cached']:.0f}) | {r['agg8']:.0f} "
            f"({r['agg_ratio']:.2f}x) | {agree} | {r['rss_base']:.0f} / {r['rss_10']:.0f} "
            f"({r['rss_10'] / r['rss_base']:.2f}x) |"
        )
    print()
    print(f"persona prompt: about {rows[0]['persona_tokens'] if rows else '?'} tokens")
    print(
        f"served /v1/chat/completions (SSE, default engine): TTFT {served['ttft']:.3f} s, "
        f"decode {served['rate']:.0f} tok/s"
    )
    print()
    print("| path (default engine's GGUF, same threads) | TTFT s | decode tok/s | served / raw |")
    print("|---|---|---|---|")
    print(f"| raw xllamacpp, no Anima code | {raw['ttft']:.3f} | {raw['rate']:.0f} | |")
    ratio = served["rate"] / raw["rate"] if raw["rate"] else float("nan")
    print(
        f"| served /v1 (HTTP, SSE) | {served['ttft']:.3f} | {served['rate']:.0f} "
        f"| {ratio:.2f} (target >= 0.9) |"
    )
    print()
    print(
        f"persona warming: first token of a new chat, {warming.get('prefix_tokens', 0):.0f}-token "
        f"warmed prefix (target <= 0.5 s warmed)"
    )
    print("| cold (warming off) s | warmed s | warmed after restart s | warm step s | disk MB |")
    print("|---|---|---|---|---|")
    print(
        f"| {warming['cold']:.2f} | {warming['warmed']:.2f} | {warming['restarted']:.2f} "
        f"| {warming.get('warm_s', float('nan')):.1f} | {warming.get('disk_mb', 0):.1f} |"
    )


if __name__ == "__main__":
    main()
