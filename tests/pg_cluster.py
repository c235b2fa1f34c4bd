"""A throwaway PostgreSQL cluster from the Debian server binaries, for tests and benchmarks.

``make test`` installs the binaries. The server refuses to run as root, so when we are root
it runs as the ``postgres`` user. ``fsync=off``: the data is thrown away anyway.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def _run(args: list[str], as_postgres: bool) -> None:
    if as_postgres:
        args = ["runuser", "-u", "postgres", "--", *args]
    subprocess.run(args, check=True, capture_output=True, timeout=120)


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a cluster on a free port; yield its SQLAlchemy URL; stop and delete it."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        raise PostgresMissing("PostgreSQL server binaries are not installed (make test does it)")
    bindir = Path(bins[-1]).parent
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="anima-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _run(
        [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "anima", "--no-sync"],
        as_postgres,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = str(bindir / "pg_ctl")
    _run(
        [pg_ctl, "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"],
        as_postgres,
    )
    try:
        yield f"postgresql+psycopg://anima@127.0.0.1:{port}/postgres"
    finally:
        _run([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], as_postgres)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str, prefix: str = "t") -> Iterator[str]:
    """A new empty database on the cluster at ``server_url``, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
