"""Durable jobs across processes: SIGKILL mid-step, recovery of a dead executor, two workers.

Workers are real ``python app.py worker`` subprocesses; the test process only enqueues
(``jobs_run_in_app=False``), as the web process does in a scaled-out install. Each step of the
``test.steps`` kind appends ``start sN`` / ``end sN`` to a log, so the tests count exactly which
steps ran and how often.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.core.jobs_kinds  # noqa: F401  (registers the test job kinds here too)
from agents.llm.pool import LLMPool
from container import Services, build_services
from core.principal import SYSTEM
from core.settings import Settings
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class Workers:
    """Starts ``python app.py worker`` processes on one data dir / database; kills them all."""

    def __init__(self, tmp_path: Path, database_url: str | None) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "ANIMA_DATA_DIR": str(tmp_path / "data"),
            "ANIMA_JOBS_EXTRA_MODULES": "tests.core.jobs_kinds",
            "ANIMA_JOBS_POLL_INTERVAL_S": "0.1",
            "ANIMA_LLM_PRELOAD": "false",
            "ANIMA_LOG_LEVEL": "WARNING",
        }
        if database_url:
            self.env["ANIMA_DATABASE_URL"] = database_url
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, executor_id: str) -> subprocess.Popen[bytes]:
        out = self.tmp_path / f"worker-{executor_id}-{len(self.procs)}.out"
        proc = subprocess.Popen(
            [sys.executable, "app.py", "worker", "--executor-id", executor_id],
            cwd=REPO,
            env=self.env,
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        wait_until(
            lambda: f"worker {executor_id} ready" in out.read_text() or proc.poll() is not None,
            timeout=60,
            message=f"worker {executor_id} to start",
        )
        assert proc.poll() is None, out.read_text()[-3000:]
        return proc

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "app.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _enqueuer(tmp_path: Path, llm_pool: LLMPool, database_url: str | None) -> Services:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        jobs_run_in_app=False,
        llm_preload=False,
    )
    return build_services(settings, llm=llm_pool)


@pytest.fixture
def sqlite_setup(tmp_path: Path, llm_pool: LLMPool) -> Iterator[tuple[Services, Workers]]:
    services = _enqueuer(tmp_path, llm_pool, None)
    workers = Workers(tmp_path, None)
    yield services, workers
    workers.stop_all()
    services.close()


@pytest.fixture
def pg_setup(
    tmp_path: Path, llm_pool: LLMPool, postgres_database: str
) -> Iterator[tuple[Services, Workers]]:
    services = _enqueuer(tmp_path, llm_pool, postgres_database)
    workers = Workers(tmp_path, postgres_database)
    yield services, workers
    workers.stop_all()
    services.close()


def test_a_job_killed_mid_step_resumes_after_restart_without_repeating_steps(
    sqlite_setup: tuple[Services, Workers], tmp_path: Path
) -> None:
    services, workers = sqlite_setup
    log = tmp_path / "steps.log"
    first = workers.start("w1")
    job = services.jobs.submit("test.steps", {"log": str(log), "n": 4, "seconds": 1.0})
    wait_until(lambda: "start s1" in _lines(log), message="step s1 to start")
    first.send_signal(signal.SIGKILL)  # in the middle of step s1
    first.wait(timeout=10)
    assert services.jobs.get(job.id, principal=SYSTEM).status == "running"
    assert "end s1" not in _lines(log)

    second = workers.start("w1")  # the same executor comes back and recovers its job
    view = services.jobs.wait(job.id, timeout=60, principal=SYSTEM)
    assert view.status == "succeeded", view
    assert view.result is not None and view.result["pid"] == second.pid
    lines = _lines(log)
    assert lines.count("start s0") == 1 and lines.count("end s0") == 1  # not repeated
    assert lines.count("start s1") == 2 and lines.count("end s1") == 1  # re-ran from its start
    for step in ("s2", "s3"):
        assert lines.count(f"start {step}") == 1 and lines.count(f"end {step}") == 1
    assert (view.progress_done, view.progress_total) == (4, 4)


def test_recover_hands_a_dead_executors_job_to_another_worker(
    pg_setup: tuple[Services, Workers], tmp_path: Path
) -> None:
    services, workers = pg_setup
    log = tmp_path / "steps.log"
    dead = workers.start("machine-a")
    job = services.jobs.submit("test.steps", {"log": str(log), "n": 3, "seconds": 1.0})
    wait_until(lambda: "start s1" in _lines(log), message="step s1 to start")
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=10)
    workers.start("machine-b")
    # machine-b takes new work from the queue, but not a job another executor owns:
    probe = services.jobs.submit("test.steps", {"log": str(tmp_path / "probe.log"), "n": 1})
    assert services.jobs.wait(probe.id, timeout=60, principal=SYSTEM).executor_id == "machine-b"
    view = services.jobs.get(job.id, principal=SYSTEM)
    assert (view.status, view.executor_id) == ("running", "machine-a")
    assert "start s2" not in _lines(log)
    assert "handed 1 pending job(s)" in workers.run("recover", "machine-a")
    view = services.jobs.wait(job.id, timeout=60, principal=SYSTEM)
    assert view.status == "succeeded" and view.executor_id == "machine-b"
    lines = _lines(log)
    assert lines.count("start s0") == 1 and lines.count("start s2") == 1
    assert lines.count("end s1") == 1
    assert "handed 0 pending job(s)" in workers.run("recover", "machine-a")  # idempotent


def test_two_workers_on_postgres_run_each_of_50_jobs_exactly_once(
    pg_setup: tuple[Services, Workers], tmp_path: Path
) -> None:
    services, workers = pg_setup
    workers.start("w1")
    workers.start("w2")
    logs = [tmp_path / f"job{i}.log" for i in range(50)]
    jobs = [
        services.jobs.submit("test.steps", {"log": str(log), "n": 2, "seconds": 0.02})
        for log in logs
    ]
    views = [services.jobs.wait(job.id, timeout=90, principal=SYSTEM) for job in jobs]
    assert [v.status for v in views] == ["succeeded"] * 50
    for log in logs:
        assert _lines(log) == ["start s0", "end s0", "start s1", "end s1"], log
    executors = {v.result["executor"] for v in views if v.result}
    assert executors == {"w1", "w2"}, executors
