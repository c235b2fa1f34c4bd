"""Usage metering: ``GET /api/usage`` adds up what happened and shows nobody else's use; the
batched writer loses nothing and duplicates nothing when a flush fails, and a killed process
keeps everything older than about a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agents.llm.pool import LLMPool
from container import Services, build_services
from core.db import Database
from core.principal import Principal
from core.settings import Settings
from tests.chain.helpers import fast_settings, new_wallet, sign_in
from tests.servers import serve_app
from usage.records import UsageRecord
from usage.service import UsageService
from usage.writer import BatchWriter

ROOT = Path(__file__).resolve().parents[2]
ASK = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def usage_services(
    tmp_path_factory: pytest.TempPathFactory, llm_pool: LLMPool
) -> Iterator[Services]:
    svc = build_services(fast_settings(tmp_path_factory.mktemp("usage-data")), llm=llm_pool)
    svc.chain.start(follow=False)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def usage_app(usage_services: Services) -> FastAPI:
    from app import create_app

    return create_app(services=usage_services)


def _signed_in(app: FastAPI) -> TestClient:
    client = TestClient(app)
    sign_in(client, new_wallet())
    return client


def _key(client: TestClient) -> dict[str, Any]:
    created = client.post("/api/auth/keys", json={"name": "k"})
    assert created.status_code == 201, created.text
    return created.json()


def _rows(client: TestClient, **params: Any) -> dict[str | None, dict[str, Any]]:
    answer = client.get("/api/usage", params=params)
    assert answer.status_code == 200, answer.text
    return {row["group"]: row for row in answer.json()["rows"]}


@pytest.mark.model
def test_usage_adds_up_per_agent_key_and_day_and_hides_other_peoples_use(
    usage_app: FastAPI, usage_services: Services
) -> None:
    alice, bob = _signed_in(usage_app), _signed_in(usage_app)
    made = alice.post("/api/agents", json={"name": "Bram", "description": "A baker."})
    assert made.status_code == 201, made.text
    agent = made.json()["id"]
    bobs_own = bob.post("/api/agents", json={"name": "Bob's", "description": "Quiet."}).json()
    alices_key, bobs_key = _key(alice), _key(bob)

    tokens: dict[str, int] = {}
    with serve_app(usage_app) as server:
        for who, key, model in [
            ("bob", bobs_key, agent),
            ("bob", bobs_key, agent),
            ("bob", bobs_key, bobs_own["id"]),
            ("alice", alices_key, agent),
        ]:
            client = openai.OpenAI(base_url=f"{server}/v1", api_key=key["key"], max_retries=0)
            reply = client.chat.completions.create(
                model=model, messages=ASK, max_tokens=3, temperature=0
            )
            assert reply.usage is not None
            tokens[who] = tokens.get(who, 0) + reply.usage.total_tokens
    # Alice also chats in a conversation with her session (the studio's path).
    conversation = alice.post(f"/api/agents/{agent}/conversations").json()["id"]
    sent = alice.post(
        f"/api/conversations/{conversation}/messages",
        json={"content": "Hi", "generation": {"max_new_tokens": 3}},
    )
    assert sent.status_code == 200, sent.text
    session_tokens = sent.json()["usage"]["total_tokens"]
    assert session_tokens > 0

    # The owner sees her agent's use by everyone, counted (2 users, 4 requests)...
    by_agent = _rows(alice, group_by="agent")
    assert by_agent[agent]["requests"] == 4
    assert by_agent[agent]["users"] == 2  # Bob (a key), Alice (a key and her session)
    assert bobs_own["id"] not in by_agent  # ...but not what Bob does with his own agent
    # ...and by key only her own keys.
    by_key = _rows(alice, group_by="key")
    assert set(by_key) == {alices_key["id"], None}
    assert by_key[alices_key["id"]]["total_tokens"] == tokens["alice"]
    # Bob sees his own use only, on both agents.
    bobs = _rows(bob, group_by="agent")
    assert {g: r["requests"] for g, r in bobs.items()} == {agent: 2, bobs_own["id"]: 1}
    assert sum(r["total_tokens"] for r in bobs.values()) == tokens["bob"]
    by_day = _rows(bob, group_by="day")
    assert len(by_day) == 1 and next(iter(by_day.values()))["requests"] == 3
    # Filters, and someone else's key is not found.
    assert set(_rows(alice, group_by="agent", key_id=alices_key["id"])) == {agent}
    assert _rows(alice, group_by="day", since="2999-01-01T00:00:00Z") == {}
    assert alice.get("/api/usage", params={"key_id": bobs_key["id"]}).status_code == 404
    assert alice.get("/api/usage", params={"group_by": "user"}).status_code == 422
    assert TestClient(usage_app).get("/api/usage").status_code == 401
    # Every record has its request id, caller and outcome.
    with usage_services.db.session() as s:
        rows = s.scalars(select(UsageRecord).where(UsageRecord.agent_id == agent)).all()
    assert len(rows) == 4 and {r.outcome for r in rows} == {"ok"}
    assert {r.route for r in rows} == {"v1.chat", "chat.send"}
    assert len({r.id for r in rows}) == 4


# ----- the batched writer ------------------------------------------------------------------------


def _row(i: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "id": f"req-{i}",
        "created_at": datetime.now(UTC),
        "key_id": "k1",
        "address": None,
        "visitor_id": None,
        "agent_id": "a1",
        "route": "v1.chat",
        "prompt_tokens": 2,
        "completion_tokens": 1,
        "audio_seconds": 0.0,
        "latency_ms": 5,
        "outcome": "ok",
    }


def _count(db: Database) -> tuple[int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(UsageRecord)) or 0,
            s.scalar(select(func.count(func.distinct(UsageRecord.id)))) or 0,
        )


def test_a_failed_flush_keeps_its_batch_and_a_retry_writes_each_record_once(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'usage.db'}")
    db.migrate()
    writer = BatchWriter(db, interval_s=60)  # flushed by hand here
    real_write = writer._write
    faults = iter(["before commit", "after commit"])

    def failing_write(batch: list[dict[str, Any]]) -> None:
        fault = next(faults, None)
        if fault == "after commit":
            real_write(batch)  # the rows are in, but the answer is lost
        if fault is not None:
            raise OSError(f"database went away ({fault})")
        real_write(batch)

    writer._write = failing_write  # type: ignore[method-assign]
    for i in range(5):
        writer.put(_row(i))
    with pytest.raises(OSError, match="before commit"):
        writer.flush()
    assert _count(db) == (0, 0) and len(writer.pending()) == 5
    writer.put(_row(5))
    with pytest.raises(OSError, match="after commit"):
        writer.flush()
    assert _count(db) == (6, 6) and len(writer.pending()) == 6  # not known to be written
    writer.put(_row(6))
    assert writer.flush() == 7  # the retry: six already there, one new
    assert _count(db) == (7, 7) and writer.pending() == []
    writer.close()
    db.dispose()


def test_budgets_count_records_not_yet_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, usage_flush_s=1.0)
    db = Database(settings.resolved_database_url)
    db.migrate()
    service = UsageService(settings, db, lambda p: [], lambda key_id: None)
    caller = Principal(address="0x" + "1" * 40, via="api_key", key_id="k1")
    service.record(principal=caller, agent_id="a1", route="v1.chat", prompt_tokens=4)
    assert service._tokens_since("k1", _day_start()) == 4  # queued, not written
    service.flush()
    service.record(principal=caller, agent_id="a1", route="v1.chat", completion_tokens=3)
    assert service._tokens_since("k1", _day_start()) == 7  # one written, one queued
    service.close()
    assert _count(db) == (2, 2)
    db.dispose()


def _day_start() -> Any:
    from datetime import UTC, datetime

    from usage.limiter import period_start

    return period_start("day", datetime.now(UTC))


# ----- kill -9 -----------------------------------------------------------------------------------

_METERING_PROCESS = """
import sys, time
from core.db import Database
from core.principal import Principal
from core.settings import Settings
from usage.service import UsageService

settings = Settings(data_dir=sys.argv[1])
settings.ensure_dirs()
db = Database(settings.resolved_database_url)
db.migrate()
service = UsageService(settings, db, lambda p: [], lambda key_id: None)
caller = Principal(address=None, via="api_key", key_id="k1")
print("ready", flush=True)
i = 0
while True:
    service.record(principal=caller, agent_id="a1", route="v1.chat", prompt_tokens=1,
                   request_id=f"r{i}")
    print(f"{i} {time.time()}", flush=True)
    i += 1
    time.sleep(0.005)
"""


def test_a_killed_process_keeps_every_record_older_than_a_second(tmp_path: Path) -> None:
    data = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-c", _METERING_PROCESS, str(data)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    time.sleep(3)
    process.send_signal(signal.SIGKILL)
    killed_at = time.time()
    output, _ = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    recorded = [line.split() for line in output.splitlines() if line.strip()]
    older = {f"r{i}" for i, at in recorded if float(at) < killed_at - 1.0}
    assert len(older) > 50, "the process recorded too little to judge"

    db = Database(Settings(data_dir=data).resolved_database_url)
    with db.session() as s:
        stored = set(s.scalars(select(UsageRecord.id)).all())
    db.dispose()
    assert older - stored == set()
    assert stored <= {f"r{i}" for i, _ in recorded}  # nothing made up, nothing twice
