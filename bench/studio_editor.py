"""Benchmark: how long the agent editor takes to open a card with a 500-entry lorebook.

"Open" is what a click on the agent picker runs on the server: the editor's own load handler
(the card form) plus the lorebook panel's (its entries table, the bulk list, the books), and,
for API clients, ``GET /api/agents/{id}/lorebook/entries``. The entries are SillyTavern-like
(two keys, a secondary key, a paragraph of content, extensions), so the timing includes
validating and rendering realistic rows. No model is loaded.

Run by hand (one benchmark at a time on a shared machine):

    flock /tmp/anima-bench.lock .venv/bin/python bench/studio_editor.py [--entries 500] [--runs 30]

Target: p50 under 1 s for each row. Quote medians and the load average beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from container import build_services  # noqa: E402
from core.principal import ANONYMOUS  # noqa: E402
from core.settings import Settings  # noqa: E402
from ui.agents import handlers as editor  # noqa: E402
from ui.panels.lorebook import handlers as lorebook  # noqa: E402

TARGET_MS = 1000.0
TARGET = "< 1 s"


def book(entries: int) -> dict:
    words = [
        "the",
        "old",
        "lighthouse",
        "keeper",
        "remembers",
        "every",
        "ship",
        "that",
        "passed",
        "the",
        "reef",
    ]
    return {
        "name": "Bench lore",
        "scan_depth": 4,
        "token_budget": 1024,
        "entries": [
            {
                "id": n,
                "keys": [f"place{n}", f"/name{n}s?/i"],
                "secondary_keys": [f"hint{n}"],
                "comment": f"Entry {n}",
                "content": " ".join(words[(n + i) % len(words)] for i in range(60)),
                "enabled": n % 7 != 0,
                "insertion_order": n % 100,
                "selective": True,
                "constant": n % 50 == 0,
                "position": "before_char" if n % 2 else "after_char",
                "extensions": {"position": n % 2, "depth": 4, "probability": 100},
            }
            for n in range(entries)
        ],
    }


def p50_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm caches (imports, the first query plan)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def rows(entries: int = 500, runs: int = 30) -> list[tuple[str, float, str]]:
    """(name, p50 ms, target) per measurement."""
    from app import create_app

    with tempfile.TemporaryDirectory(prefix="anima-bench-editor-") as tmp:
        services = build_services(
            Settings(data_dir=Path(tmp), llm_preload=False, allowed_hosts="testserver")
        )
        try:
            agent = services.agents.create_agent(
                {
                    "name": "Keeper",
                    "description": "{{char}} keeps the light.",
                    "character_book": book(entries),
                },
                principal=ANONYMOUS,
            )

            def open_editor() -> None:
                editor.load(services, agent.id)
                lorebook.load(services, agent.id, "", principal=ANONYMOUS)

            client = TestClient(create_app(services=services))

            def rest_entries() -> None:
                response = client.get(f"/api/agents/{agent.id}/lorebook/entries")
                assert response.status_code == 200 and len(response.json()) == entries

            def search() -> None:
                lorebook.search(services, agent.id, "name42", principal=ANONYMOUS)

            label = f"{entries} entries"
            return [
                (
                    f"editor open ({label}: card form + lorebook panel)",
                    p50_ms(open_editor, runs),
                    TARGET,
                ),
                (f"GET lorebook entries ({label})", p50_ms(rest_entries, runs), TARGET),
                (f"lorebook search ({label})", p50_ms(search, runs), TARGET),
            ]
        finally:
            services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=500)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    results = rows(args.entries, args.runs)
    width = max(len(name) for name, _, _ in results)
    print(f"{'measurement':<{width}}  {'p50 ms':>8}  target")
    for name, ms, target in results:
        print(f"{name:<{width}}  {ms:8.1f}  {target}")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
