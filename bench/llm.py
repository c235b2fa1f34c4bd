"""Benchmark: raw ``model.generate`` against the served ``/v1/chat/completions`` path.

Both paths run the same prompt (the messages Anima builds for a benchmark agent) on the same
loaded model, greedy, so the difference between the rows is what prompt assembly, FastAPI,
SSE and the HTTP client cost. Prints a table of medians; run by hand:

    .venv/bin/python bench/llm.py [--runs 5] [--tokens 128]

The machine's load moves absolute numbers a lot on 2 shared cores: compare the ratios.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import uvicorn

from agents.prompt import build_prompt
from agents.schema import ChatMessage
from app import create_app
from bench.llm_raw import measure_raw
from container import build_services
from core.settings import Settings

QUESTION = "Tell me about your favourite place to nap."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_served(base: str, agent_id: str, tokens: int, runs: int) -> dict[str, float]:
    """Median TTFT and decode rate seen by an HTTP client streaming a chat completion."""
    body = {
        "model": agent_id,
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "max_tokens": tokens,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }

    def one_run(client: httpx.Client) -> tuple[float, float, int]:
        started = time.perf_counter()
        first = last = None
        completion_tokens = 0
        with client.stream("POST", f"{base}/v1/chat/completions", json=body) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    completion_tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    if choice["delta"].get("content"):
                        now = time.perf_counter()
                        first = first if first is not None else now
                        last = now
        if first is None or last is None:
            return float("nan"), float("nan"), 0
        span = last - first
        rate = (
            (completion_tokens - 1) / span if span > 0 and completion_tokens > 1 else float("nan")
        )
        return first - started, rate, completion_tokens

    with httpx.Client(timeout=300) as client:
        one_run(client)  # warm-up
        samples = [one_run(client) for _ in range(runs)]
    return {
        "ttft_s": statistics.median(s[0] for s in samples),
        "decode_tok_s": statistics.median(s[1] for s in samples),
        "completion_tokens": statistics.median(s[2] for s in samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()

    base_settings = Settings()
    with tempfile.TemporaryDirectory(prefix="anima-bench-") as tmp:
        settings = base_settings.model_copy(
            update={
                "data_dir": Path(tmp),
                "model_cache_dir": base_settings.models_dir.resolve(),
                "llm_preload": False,
            }
        )
        services = build_services(settings)
        agent = services.agents.create_agent(
            {
                "name": "Luna",
                "description": "{{char}} is a cheerful cat who loves telling stories.",
                "personality": "playful, curious",
                "scenario": "{{user}} visits Luna's sunny garden.",
                "generation": {
                    "max_new_tokens": args.tokens,
                    "temperature": 0.0,
                    "repetition_penalty": 1.0,
                },
            }
        )
        backend = services.llm.get()
        t0 = time.perf_counter()
        backend.load()  # type: ignore[attr-defined]
        load_s = time.perf_counter() - t0
        card = services.agents.get_card(agent.id)
        prompt = build_prompt(
            card.data,
            [ChatMessage(role="user", content=QUESTION)],
            user_name="User",
            count_tokens=backend.count_tokens,
            context_window=backend.context_window,
            max_new_tokens=args.tokens,
        )
        raw = measure_raw(backend, prompt.messages, max_new_tokens=args.tokens, runs=args.runs)

        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(services=services), port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        served = measure_served(f"http://127.0.0.1:{port}", agent.id, args.tokens, args.runs)
        server.should_exit = True
        thread.join(timeout=10)
        services.close()

    print(
        f"model {backend.model_name}, dtype {raw['dtype']}, device {raw['device']}, "
        f"load {load_s:.1f} s, prompt {raw['prompt_tokens']} tokens, "
        f"{args.runs} runs after a warm-up, medians"
    )
    print()
    print("| path | TTFT s | decode tok/s | reply tokens |")
    print("|---|---|---|---|")
    print(
        f"| raw model.generate | {raw['ttft_s']:.3f} | {raw['decode_tok_s']:.1f} | "
        f"{raw['completion_tokens']} |"
    )
    print(
        f"| served /v1/chat/completions (SSE) | {served['ttft_s']:.3f} | "
        f"{served['decode_tok_s']:.1f} | {served['completion_tokens']:.0f} |"
    )
    print()
    print(
        f"API overhead: TTFT +{(served['ttft_s'] - raw['ttft_s']) * 1000:.0f} ms "
        f"({served['ttft_s'] / raw['ttft_s']:.2f}x), decode "
        f"{served['decode_tok_s'] / raw['decode_tok_s']:.2f}x of raw"
    )


if __name__ == "__main__":
    main()
