"""Benchmark: durable jobs, enqueue-to-start latency and steps per second.

For SQLite and PostgreSQL, with one and two ``python app.py worker`` processes, this process
enqueues (as the web process does when ``ANIMA_JOBS_RUN_IN_APP=false``) and measures:

- latency: one trivial job at a time on an idle queue, ``started_at - created_at`` of the job
  (the time from the row being written to the job function starting in a worker), each job
  submitted at a random moment of the workers' polling cycle (``--poll``, the setting
  ``ANIMA_JOBS_POLL_INTERVAL_S``);
- steps/s: ``--jobs`` jobs of ``--steps`` no-op durable steps each, enqueued together; every
  step is a checkpoint written to the jobs database, so this is the checkpoint rate.

Run by hand (one benchmark at a time on a shared machine):

    flock /tmp/anima-bench.lock .venv/bin/python bench/jobs.py [--latency-jobs 40]

PostgreSQL rows need the Debian server binaries (``make test`` installs them); a throwaway
cluster is started and removed. Quote medians and the load average beside them.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from container import Services, build_services  # noqa: E402
from core.jobs import JobContext, job_kind  # noqa: E402
from core.settings import Settings  # noqa: E402


def _noop() -> None:
    return None


@job_kind("bench.noop")
def noop_job(ctx: JobContext, *, steps: int = 1) -> dict[str, int]:
    for _ in range(steps):
        ctx.step("noop", _noop)
    return {"steps": steps}


@contextmanager
def workers(count: int, data_dir: Path, database_url: str | None, poll_s: float) -> Iterator[None]:
    env = {
        **os.environ,
        "ANIMA_DATA_DIR": str(data_dir),
        "ANIMA_JOBS_EXTRA_MODULES": "bench.jobs",
        "ANIMA_LLM_PRELOAD": "false",
        "ANIMA_LOG_LEVEL": "WARNING",
        "ANIMA_JOBS_POLL_INTERVAL_S": str(poll_s),
    }
    if database_url:
        env["ANIMA_DATABASE_URL"] = database_url
    procs = []
    try:
        for i in range(count):
            out = data_dir / f"worker{i}.out"
            procs.append(
                (
                    subprocess.Popen(
                        [sys.executable, "app.py", "worker", "--executor-id", f"bench-{i}"],
                        cwd=ROOT,
                        env=env,
                        stdout=out.open("wb"),
                        stderr=subprocess.STDOUT,
                    ),
                    out,
                )
            )
        for proc, out in procs:
            deadline = time.monotonic() + 60
            while "ready" not in out.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start:\n{out.read_text()[-2000:]}")
                time.sleep(0.05)
        yield
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            proc.wait(timeout=30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(services: Services, latency_jobs: int, jobs: int, steps: int) -> dict[str, float]:
    svc = services.jobs
    for _ in range(2):  # warm-up: connections, first queue poll
        svc.wait(svc.submit("bench.noop").id, timeout=60, poll_s=0.01)
    latencies = []
    for _ in range(latency_jobs):
        # Arrive at a random moment of the executors' polling cycle: submitting right after
        # the previous job ended would phase-lock to it and always wait a whole interval.
        time.sleep(random.uniform(0, services.settings.jobs.poll_interval_s))
        view = svc.wait(svc.submit("bench.noop").id, timeout=60, poll_s=0.01)
        assert view.started_at is not None
        latencies.append((view.started_at - view.created_at).total_seconds())
    batch = [svc.submit("bench.noop", {"steps": steps}).id for _ in range(jobs)]
    views = [svc.wait(job_id, timeout=600, poll_s=0.05) for job_id in batch]
    assert all(v.status == "succeeded" for v in views), [v.error for v in views]
    first = min(v.started_at for v in views if v.started_at)
    last = max(v.finished_at for v in views if v.finished_at)
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "steps_s": jobs * steps / (last - first).total_seconds(),
        "executors": len({v.executor_id for v in views}),
    }


def run_case(
    backend: str, count: int, database_url: str | None, args: argparse.Namespace
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="anima-bench-jobs-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(
            data_dir=data_dir,
            database_url=database_url,
            jobs_run_in_app=False,
            jobs_poll_interval_s=args.poll,
            llm_preload=False,
        )
        services = build_services(settings)
        try:
            with workers(count, data_dir, database_url, args.poll):
                return measure(services, args.latency_jobs, args.jobs, args.steps)
        finally:
            services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-jobs", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=4, help="jobs in the steps/s batch")
    parser.add_argument("--steps", type=int, default=200, help="steps per job in that batch")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--poll", type=float, default=0.2, help="executor polling interval, s")
    args = parser.parse_args()

    from tests.pg_cluster import fresh_database, throwaway_postgres

    rows = []
    with ExitStack() as stack:
        server = None
        for backend in args.backends.split(","):
            for count in (int(n) for n in args.workers.split(",")):
                url = None
                if backend == "postgres":
                    server = server or stack.enter_context(throwaway_postgres())
                    url = stack.enter_context(fresh_database(server, "bench"))
                result = run_case(backend, count, url, args)
                rows.append((backend, count, result))
                print(f"  {backend} x{count}: {result}", file=sys.stderr, flush=True)

    load = os.getloadavg()
    print(
        f"\nJobs benchmark: {args.latency_jobs} sequential trivial jobs for latency; "
        f"{args.jobs} jobs x {args.steps} no-op steps for steps/s; polling every {args.poll} s. "
        f"Load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs.\n"
    )
    print("| database | workers | enqueue-to-start p50 ms | p95 ms | steps/s | executors used |")
    print("|---|---|---|---|---|---|")
    for backend, count, r in rows:
        print(
            f"| {backend} | {count} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
            f"| {r['steps_s']:.0f} | {r['executors']:.0f} |"
        )


if __name__ == "__main__":
    main()
