"""Durable jobs in one process: progress through the API, cancel, retries, targets, keys.

These run the real dbos executor inside the test process on a SQLite file in the test's data
dir. Crash recovery and several workers need other processes: see test_jobs_durability.py.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agents.llm.pool import LLMPool
from container import Services, build_services
from core.errors import ConflictError, NotFoundError, ValidationError
from core.principal import SYSTEM
from core.settings import Settings
from tests.core import jobs_kinds  # registers the test job kinds
from tests.core.jobs_kinds import TargetDeps
from tests.waiting import wait_until


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_progress_is_readable_through_the_api_while_the_job_runs(
    client: TestClient, services: Services, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    job = services.jobs.submit(
        "test.steps",
        {"log": str(log), "n": 4, "seconds": 0.4},
        target_type="agent",
        target_id="agent-1",
    )
    assert job.status == "queued"
    seen: list[tuple[str, int, int]] = []

    def succeeded() -> bool:
        body = client.get(f"/api/jobs/{job.id}").json()
        seen.append((body["status"], body["progress_done"], body["progress_total"]))
        return body["status"] == "succeeded"

    wait_until(succeeded, interval=0.1, message=lambda: f"the job to succeed: {seen[-3:]}")
    running = [s for s in seen if s[0] == "running" and 0 < s[1] < 4]
    assert running, f"never saw the job mid-way: {seen}"
    assert all(total == 4 for _, done, total in running)
    final = client.get(f"/api/jobs/{job.id}").json()
    assert final["status"] == "succeeded"
    assert (final["progress_done"], final["progress_total"]) == (4, 4)
    assert final["result"]["steps"] == 4
    assert final["started_at"] and final["finished_at"]
    assert _lines(log).count("end s3") == 1

    listed = client.get("/api/jobs", params={"agent_id": "agent-1"}).json()
    assert [j["id"] for j in listed] == [job.id]
    assert client.get("/api/jobs", params={"agent_id": "other"}).json() == []
    assert client.get("/api/jobs", params={"kind": "test.steps", "status": "failed"}).json() == []
    assert client.get("/api/jobs", params={"status": "bogus"}).status_code == 422


def test_sse_streams_progress_and_ends_with_the_job(
    client: TestClient, services: Services, tmp_path: Path
) -> None:
    job = services.jobs.submit("test.steps", {"log": str(tmp_path / "l"), "n": 3, "seconds": 0.3})
    events: list[tuple[str, dict]] = []
    with client.stream("GET", f"/api/jobs/{job.id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
    assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded"
    assert all(name == "progress" for name, _ in events[:-1])
    dones = [data["progress_done"] for _, data in events]
    assert dones == sorted(dones) and len(set(dones)) >= 3, dones
    assert client.get("/api/jobs/nope/events").status_code == 404


def test_cancel_stops_between_steps_and_bad_cancels_are_4xx(
    client: TestClient, services: Services, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    gate = jobs_kinds.gate("cancel")
    job = services.jobs.submit(
        "test.held", {"log": str(log), "n": 20, "hold_at": 2, "gate": "cancel"}
    )
    wait_until(lambda: "start s2" in _lines(log), message=lambda: f"step s2: {_lines(log)}")
    response = client.post(f"/api/jobs/{job.id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    gate.set()  # the step that was running finishes; the job stops before the next one
    wait_until(lambda: "stopped" in _lines(log), message="the job function to return")
    steps = ["start s0", "end s0", "start s1", "end s1", "start s2", "end s2"]
    assert _lines(log) == [*steps, "stopped"]
    view = services.jobs.get(job.id, principal=SYSTEM)
    assert view.status == "cancelled" and view.finished_at is not None
    assert view.progress_done == 2

    again = client.post(f"/api/jobs/{job.id}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["error"]["message"]
    unknown = client.post("/api/jobs/does-not-exist/cancel")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "NotFoundError"

    done = services.jobs.submit("test.steps", {"log": str(tmp_path / "b"), "n": 1})
    assert services.jobs.wait(done.id, timeout=20, principal=SYSTEM).status == "succeeded"
    with pytest.raises(ConflictError):
        services.jobs.cancel(done.id, principal=SYSTEM)


def test_a_flaky_step_is_retried_with_backoff(services: Services, tmp_path: Path) -> None:
    log = tmp_path / "flaky.log"
    job = services.jobs.submit("test.flaky", {"log": str(log), "fail_times": 2, "retries": 3})
    view = services.jobs.wait(job.id, timeout=30, principal=SYSTEM)
    assert view.status == "succeeded" and view.result == {"attempts": 3}
    times = [float(line.split()[1]) for line in _lines(log)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38, gaps  # 0.2 s, then doubled


def test_a_step_that_keeps_failing_fails_the_job_with_the_last_error(
    services: Services, tmp_path: Path
) -> None:
    log = tmp_path / "flaky.log"
    job = services.jobs.submit("test.flaky", {"log": str(log), "fail_times": 99, "retries": 2})
    view = services.jobs.wait(job.id, timeout=30, principal=SYSTEM)
    assert view.status == "failed"
    assert "failed 3 times" in (view.error or "")
    assert "flaky service down (attempt 3)" in (view.error or "")
    assert len(_lines(log)) == 3


def test_a_job_whose_target_is_gone_ends_cancelled_with_the_reason(
    services: Services, tmp_path: Path
) -> None:
    services.jobs.provide(TargetDeps(agents=services.agents))  # what container.py does
    job = services.jobs.submit(
        "test.target", {"agent_id": "ghost"}, target_type="agent", target_id="ghost"
    )
    view = services.jobs.wait(job.id, timeout=20, principal=SYSTEM)
    assert view.status == "cancelled"
    assert view.message == "agent ghost was deleted"
    # the executor survived it
    ok = services.jobs.submit("test.steps", {"log": str(tmp_path / "x.log"), "n": 1})
    assert services.jobs.wait(ok.id, timeout=20, principal=SYSTEM).status == "succeeded"


def test_bad_submissions_and_idempotency_keys(services: Services, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unknown job kind"):
        services.jobs.submit("no.such.kind")
    with pytest.raises(ValidationError, match="JSON"):
        services.jobs.submit("test.steps", {"log": object()})
    with pytest.raises(NotFoundError):
        services.jobs.get("missing", principal=SYSTEM)
    first = services.jobs.submit(
        "test.steps", {"log": str(tmp_path / "x.log"), "n": 1}, idempotency_key="k1"
    )
    second = services.jobs.submit(
        "test.steps", {"log": str(tmp_path / "x.log"), "n": 1}, idempotency_key="k1"
    )
    assert first.id == second.id
    assert len(services.jobs.list(kind="test.steps", principal=SYSTEM)) == 1
    services.jobs.wait(first.id, timeout=20, principal=SYSTEM)


def test_services_can_be_built_used_closed_and_built_again(
    tmp_path: Path, model_cache_dir: Path, llm_pool: LLMPool
) -> None:
    for round_ in range(2):
        settings = Settings(
            data_dir=tmp_path / f"d{round_}", model_cache_dir=model_cache_dir, llm_preload=False
        )
        services = build_services(settings, llm=llm_pool)
        try:
            job = services.jobs.submit("test.steps", {"log": str(tmp_path / "x.log"), "n": 2})
            assert services.jobs.wait(job.id, timeout=20, principal=SYSTEM).status == "succeeded"
            assert (settings.data_dir / "jobs.sqlite").exists()
        finally:
            services.close()
        assert not services.jobs.executing


def test_a_job_cut_short_by_a_graceful_shutdown_resumes_when_the_app_comes_back(
    settings: Settings, llm_pool: LLMPool, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    gate = jobs_kinds.gate("shutdown")
    first = build_services(settings, llm=llm_pool)
    job = first.jobs.submit(
        "test.held", {"log": str(log), "n": 3, "hold_at": 1, "gate": "shutdown"}
    )
    wait_until(lambda: "start s1" in _lines(log), message=lambda: f"step s1: {_lines(log)}")
    first.close()  # mid-step s1, as on SIGTERM
    gate.set()  # s1 finishes; no later step starts in a stopped executor
    wait_until(lambda: "stopped" in _lines(log), message="the job function to return")
    assert "start s2" not in _lines(log)
    # not marked failed by the shutdown
    assert first.jobs.get(job.id, principal=SYSTEM).status == "running"

    second = build_services(settings, llm=llm_pool)
    try:
        assert second.jobs.has_unfinished_jobs()
        second.jobs.start_executor()  # what the app's start-up does when jobs are pending
        view = second.jobs.wait(job.id, timeout=30, principal=SYSTEM)
        assert view.status == "succeeded", view
        lines = _lines(log)
        assert lines.count("start s0") == 1 and lines.count("start s2") == 1
    finally:
        second.close()


def test_the_served_app_runs_jobs_from_start_up(services: Services) -> None:
    from app import create_app

    assert not services.jobs.executing  # building services launches nothing
    with TestClient(create_app(services=services, start_jobs=True)):
        assert services.jobs.executing  # started inside the async lifespan


def test_deleting_a_target_cancels_its_jobs_with_the_reason(
    services: Services, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    running = services.jobs.submit(
        "test.steps",
        {"log": str(log), "n": 50, "seconds": 0.1},
        target_type="agent",
        target_id="a1",
    )
    other = services.jobs.submit(
        "test.steps",
        {"log": str(tmp_path / "o.log"), "n": 1},
        target_type="agent",
        target_id="a2",
    )
    assert services.jobs.cancel_for_target("agent", "a1", "agent a1 was deleted") == [running.id]
    view = services.jobs.get(running.id, principal=SYSTEM)
    assert view.status == "cancelled" and view.message == "agent a1 was deleted"
    assert services.jobs.wait(other.id, timeout=20, principal=SYSTEM).status == "succeeded"


def test_a_job_lost_between_its_row_and_its_enqueue_is_enqueued_on_read(
    services: Services, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from core.job_records import JobRecord

    services.jobs.start_executor()
    with services.db.session() as session:  # as if the process died inside submit()
        session.add(
            JobRecord(
                id="lost-job",
                kind="test.steps",
                status="queued",
                params={"log": str(tmp_path / "lost.log"), "n": 1},
                progress_done=0,
                progress_total=0,
                message="queued",
                created_at=datetime.now(UTC) - timedelta(minutes=5),
            )
        )
    assert services.jobs.wait("lost-job", timeout=20, principal=SYSTEM).status == "succeeded"
    assert _lines(tmp_path / "lost.log") == ["start s0", "end s0"]
