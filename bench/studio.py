"""Studio latency with many agents: the gallery's first page and its search.

    python bench/studio.py                 # 10,000 agents, 30 rounds each
    python bench/studio.py --agents 2000 --rounds 10

Seeds the agents straight into the database (one bulk insert, as an import of that many cards
would leave them), then times each step a user waits for: the service's query, the same page
over HTTP (``GET /api/agents``) and the gallery handler that renders the grid's HTML. Targets:
a search under 300 ms at p50 and the first page under 1 s. Other studio rows (the editor's open
time) come from ``bench/studio_editor.py`` when it exists: its ``rows()`` returns
``(label, p50 ms, target)`` tuples and they are printed in the same table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from agents import cards
from agents.agent_search import AgentQuery, search_columns
from agents.records import AgentRecord
from agents.schema import SPEC_V3, Card, CardData
from container import Services

Row = tuple[str, float, str]  # label, p50 in ms, target (text)
TAGS = ("fantasy", "sci-fi", "romance", "horror", "comedy", "mystery", "elf", "robot", "pirate")
WORDS = ("Aria", "Bram", "Cleo", "Dax", "Esme", "Finn", "Gale", "Hana", "Ivo", "Juno", "Kai")
SEARCH_TARGET_S = 0.3
FIRST_PAGE_TARGET_S = 1.0


def seed_agents(
    services: Services,
    count: int,
    owners: Sequence[str | None] = (None,),
    start: datetime | None = None,
) -> list[str]:
    """Insert ``count`` public agents in bulk (names like "Aria 17", one to three tags each),
    one second apart from ``start``, owned in turn by ``owners``; returns their ids."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for n in range(count):
        name = f"{WORDS[n % len(WORDS)]} {n}"
        picks = (TAGS[n % len(TAGS)], TAGS[(n // 3 + 4) % len(TAGS)], TAGS[(n // 5) % len(TAGS)])
        tags = list(dict.fromkeys(picks[: 2 + n % 2]))
        data = CardData.model_validate(
            {
                "name": name,
                "description": f"{{{{char}}}} is character number {n}, written for the bench.",
                "tags": tags,
                "creator": "bench",
            }
        )
        card = Card(spec=SPEC_V3, spec_version="3.0", data=data)
        moment = start + timedelta(seconds=n)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "name": name,
                "spec": SPEC_V3,
                "card_data": data.dump(),
                "card_extra": {},
                "content_hash": cards.content_hash(card),
                "generation": {},
                "owner_address": owners[n % len(owners)],
                "visibility": "public",
                "version": 1,
                "created_at": moment,
                "updated_at": moment,
                **search_columns(name, tags),
            }
        )
    with services.agents.db.session() as s:
        for first in range(0, len(rows), 1000):
            s.execute(insert(AgentRecord), rows[first : first + 1000])
    return [r["id"] for r in rows]


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(fn: Callable[[], Any], rounds: int) -> list[float]:
    fn()  # warm up (first query plans, imports)
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return samples


def gallery_rows(
    services: Services, client: Any, rounds: int
) -> list[tuple[str, float, float, float]]:
    """``(label, p50, p95, target)`` for the first page and a search, three ways each."""
    from core.principal import ANONYMOUS
    from ui.common import agent_choices
    from ui.gallery import handlers

    first = AgentQuery(sort="recent", limit=handlers.PAGE_SIZE)
    found = AgentQuery(q="esme 1", sort="recent", limit=handlers.PAGE_SIZE)
    cases = [
        (
            "first page",
            first,
            {"sort": "recent", "limit": handlers.PAGE_SIZE},
            "",
            FIRST_PAGE_TARGET_S,
        ),
        (
            "search",
            found,
            {"q": "esme 1", "sort": "recent", "limit": handlers.PAGE_SIZE},
            "esme 1",
            SEARCH_TARGET_S,
        ),
    ]
    rows = []
    for label, query, params, text, target in cases:
        steps: dict[str, Callable[[], Any]] = {
            "service": lambda q=query: services.agents.search_agents(q, principal=ANONYMOUS),
            "HTTP GET /api/agents": lambda p=params: _ok(client.get("/api/agents", params=p)),
            "gallery render": lambda t=text: handlers.search(
                services, t, handlers.ALL, "", "recent", principal=ANONYMOUS
            ),
        }
        for step, fn in steps.items():
            p50, p95 = percentiles(timed(fn, rounds))
            rows.append((f"gallery {label}: {step}", p50, p95, target))
    tagged = AgentQuery(tag="pirate", sort="name", limit=handlers.PAGE_SIZE)
    p50, p95 = percentiles(
        timed(lambda: services.agents.search_agents(tagged, principal=ANONYMOUS), rounds)
    )
    rows.append(("gallery tag filter + name sort: service", p50, p95, SEARCH_TARGET_S))
    # Every agent picker lists all visible agents when a page opens.
    p50, p95 = percentiles(timed(lambda: agent_choices(services, ANONYMOUS), rounds))
    rows.append(("agent picker choices (all agents)", p50, p95, FIRST_PAGE_TARGET_S))
    return rows


def _ok(answer: Any) -> Any:
    assert answer.status_code == 200, answer.text
    return answer


def extra_rows() -> list[Row]:
    """Rows another bench adds to this table (the editor's open time), if it is there."""
    path = Path(__file__).with_name("studio_editor.py")
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location("studio_editor", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.rows())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from app import create_app
    from container import build_services
    from core.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data", llm_preload=False, allowed_hosts="testserver"
        )
        services = build_services(settings)
        try:
            began = time.perf_counter()
            seed_agents(services, args.agents)
            seeded = time.perf_counter() - began
            with TestClient(create_app(services=services)) as client:
                rows = gallery_rows(services, client, args.rounds)
        finally:
            services.close()
    print(f"{args.agents:,} agents seeded in {seeded:.1f} s; {args.rounds} rounds per row")
    print(f"{'step':<56} {'p50 ms':>8} {'p95 ms':>8} {'target':>10}  ok")
    for label, p50, p95, target in rows:
        ok = "yes" if p50 < target else "NO"
        goal = f"<{target * 1000:.0f} ms"
        print(f"{label:<56} {p50 * 1000:8.1f} {p95 * 1000:8.1f} {goal:>10}  {ok}")
    for label, p50_ms, target_text in extra_rows():
        print(f"{label:<56} {p50_ms:8.1f} {'':>8} {target_text:>10}")


if __name__ == "__main__":
    main()
