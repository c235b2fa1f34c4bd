"""Command-line entry points for jobs: ``python app.py worker`` and ``python app.py recover``.

A worker is a process that only runs jobs: it builds the same services as the app (so job
code finds its database, models and chain), launches the dbos executor under its own id and
waits until SIGTERM/SIGINT. Several workers on several machines share one PostgreSQL database
(``ANIMA_DATABASE_URL``); the web process then runs with ``ANIMA_JOBS_RUN_IN_APP=false`` and
only enqueues. ``recover`` hands the pending jobs of a dead executor back to the queue.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from container import build_services
from core.jobs import worker_executor_id
from core.settings import Settings

log = logging.getLogger("anima.jobs")


def run_worker(settings: Settings, executor_id: str | None = None) -> int:
    services = build_services(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        services.jobs.start_executor(
            executor_id or settings.jobs.executor_id or worker_executor_id()
        )
        log.info("worker '%s' waiting for jobs", services.jobs.executor_id)
        print(f"worker {services.jobs.executor_id} ready", flush=True)
        stop.wait()
    finally:
        services.close()
    return 0


def run_recover(settings: Settings, executor_ids: list[str]) -> int:
    services = build_services(settings)
    try:
        recovered = services.jobs.recover(executor_ids)
    finally:
        services.close()
    print(f"handed {len(recovered)} pending job(s) back to the queue: {' '.join(recovered)}")
    return 0


def main(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="Anima job commands")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run background jobs (no web server)")
    worker.add_argument("--executor-id", help="default: ANIMA_JOBS_EXECUTOR_ID or host-pid")
    recover = commands.add_parser("recover", help="requeue the pending jobs of dead executors")
    recover.add_argument("executor_ids", nargs="+", metavar="EXECUTOR_ID")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return run_worker(settings, args.executor_id)
    return run_recover(settings, args.executor_ids)
