"""Benchmark: time from a send to the first token, with memory on, for a 500-turn chat against
a 5-turn chat (the bundled model, in-process services, no HTTP).

A long chat must answer as fast as a short one: its running summary is written beforehand by
the background job, never on the reply path, and the prompt starts where the summary ends, so
the engine reuses its cached prefix from one send to the next. Both chats run in the same
process, alternately, medians of ``--runs`` sends after one warm-up send each. Any summary job
a reply queued is waited for between sends (it is background work and would only compete for
these 2 cores); the summary of the long chat is computed before timing starts.

    .venv/bin/python bench/chat.py [--runs 7] [--turns 500] [--tokens 8]

The machine's load moves absolute numbers: the load average is printed; compare the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.conversations import new_message, take_positions
from agents.memory import SUMMARISE_KIND
from container import Services, build_services
from core.principal import ANONYMOUS, SYSTEM
from core.settings import Settings

QUESTIONS = [
    "Is the lamp lit tonight?",
    "Which ship came in late?",
    "What did the harbour master say?",
    "Where did you put the spare wick?",
]


def seed(services: Services, cid: str, turns: int) -> None:
    """``turns`` user/assistant exchanges written straight to the store."""
    with services.db.session() as s:
        start = take_positions(s, cid, 2 * turns)
        for i in range(turns):
            s.add(
                new_message(
                    cid, start + 2 * i, "user", [f"Turn {i}: how high was the tide at dock {i}?"]
                )
            )
            s.add(
                new_message(
                    cid,
                    start + 2 * i + 1,
                    "assistant",
                    [f"Dock {i} flooded at dusk; the gulls left early and the boats stayed in."],
                )
            )


def settle(services: Services, cid: str) -> None:
    """Wait for any summary job of the conversation (background work, not timed)."""
    for job in services.jobs.list(
        kind=SUMMARISE_KIND, target_type="conversation", target_id=cid, principal=SYSTEM
    ):
        if not job.finished:
            services.jobs.wait(job.id, timeout=600, principal=SYSTEM)


def timed_send(services: Services, cid: str, text: str) -> dict[str, float]:
    started = time.perf_counter()
    reply = services.chat.send(cid, text, principal=ANONYMOUS)
    first: float | None = None
    for _ in reply:
        if first is None:
            first = time.perf_counter() - started
    settle(services, cid)
    return {
        "ttft_s": first if first is not None else float("nan"),
        "prompt_tokens": reply.usage.prompt_tokens,
        # What the engine served from its prefix cache (the reply's own result, read here
        # because the usage a client sees does not carry it).
        "cached_tokens": reply._result.cached_tokens,
    }


def precompute_summary(services: Services, cid: str, how: str) -> float:
    """Memory on: the turns that no longer fit are summarised before timing starts, by the
    real job (``job``) or, where the job would take too long on a busy machine, by storing a
    summary of the same reach directly (``given``): replies read it either way."""
    started = time.perf_counter()
    if how == "job":
        job = services.memory.queue_summary(cid, principal=SYSTEM)
        if job is not None:
            services.jobs.wait(job, timeout=3600, principal=SYSTEM)
    else:
        upto = services.memory.summary_target(cid, principal=SYSTEM)
        assert upto is not None, "the long chat fits the window: nothing to summarise"
        text = f"Mira and User talked about the tides at docks 0 to {upto // 2 - 1}; all flooded."
        services.memory.store_summary(cid, text, upto, 0, principal=SYSTEM)
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    data = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    settings = Settings(data_dir=data, llm_preload=False)
    services = build_services(settings)
    try:
        agent = services.agents.create_agent(
            {
                "name": "Mira",
                "description": "{{char}} keeps the lighthouse and answers in one sentence.",
                "first_mes": "Evening, {{user}}. Storm's coming.",
                "generation": {"max_new_tokens": args.tokens, "temperature": 0.0},
            },
            principal=ANONYMOUS,
        )
        chats = {}
        for label, turns in (("5-turn chat", 2), (f"{args.turns}-turn chat", args.turns)):
            cid = services.chat.create_conversation(agent.id, principal=SYSTEM).id
            seed(services, cid, turns)
            chats[label] = cid
        long_id = chats[f"{args.turns}-turn chat"]
        summary_s = precompute_summary(services, long_id, args.summary)
        samples: dict[str, list[dict[str, float]]] = {label: [] for label in chats}
        for cid in chats.values():
            timed_send(services, cid, "Good evening.")  # warm-up: loads and caches
        for n in range(args.runs):
            for label, cid in chats.items():
                samples[label].append(timed_send(services, cid, QUESTIONS[n % len(QUESTIONS)]))
        rows = []
        for label, got in samples.items():
            conv = services.chat.get_conversation(chats[label], principal=SYSTEM)
            rows.append(
                {
                    "chat": label,
                    "messages": len(conv.messages),
                    "summary_upto": conv.summary_upto,
                    "ttft_ms": 1000 * statistics.median(s["ttft_s"] for s in got),
                    "prompt_tokens": statistics.median(s["prompt_tokens"] for s in got),
                    "cached_tokens": statistics.median(s["cached_tokens"] for s in got),
                }
            )
        rows.append({"summary_job_s": summary_s})
        return rows
    finally:
        services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument(
        "--summary",
        choices=["job", "given"],
        default="job",
        help="precompute the summary with the real job, or store one of the same reach",
    )
    args = parser.parse_args()
    *rows, extra = run(args)
    print(f"load average: {os.getloadavg()[0]:.2f}; median of {args.runs} sends each")
    print(
        f"{'chat':<16}{'messages':>10}{'summary upto':>14}{'prompt tok':>12}"
        f"{'cached tok':>12}{'TTFT ms':>10}"
    )
    for r in rows:
        print(
            f"{r['chat']:<16}{r['messages']:>10}{r['summary_upto']:>14}"
            f"{r['prompt_tokens']:>12.0f}{r['cached_tokens']:>12.0f}{r['ttft_ms']:>10.1f}"
        )
    short, long = rows[0]["ttft_ms"], rows[1]["ttft_ms"]
    print(f"long / short TTFT: {long / short:.2f} (target: at most 1.10)")
    how = "job" if args.summary == "job" else "stored directly"
    print(f"summary precomputed ({how}): {extra['summary_job_s']:.1f} s, not on the reply path")


if __name__ == "__main__":
    main()
