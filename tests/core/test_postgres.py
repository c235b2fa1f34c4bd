"""The same store on PostgreSQL: migrations and a full agent + chat round trip.

A throwaway PostgreSQL cluster is started from the Debian server binaries (``make test``
installs them); it runs as the ``postgres`` user when the tests run as root, because the
server refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agents import cards
from agents.llm.pool import LLMPool
from container import build_services
from core.db import Base, Database
from core.settings import Settings


def _run(args: list[str], as_postgres: bool) -> None:
    if as_postgres:
        args = ["runuser", "-u", "postgres", "--", *args]
    subprocess.run(args, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL server binaries are not installed (make test installs them)")
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
    _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(root / "log"),
            "start",
        ],
        as_postgres,
    )
    try:
        yield f"postgresql+psycopg://anima@127.0.0.1:{port}/postgres"
    finally:
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], as_postgres)
        shutil.rmtree(root, ignore_errors=True)


def test_migrations_on_postgres_match_the_models(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.migrate()
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_agents_cards_and_chats_work_on_postgres(
    postgres_url: str, tmp_path: Path, llm_pool: LLMPool
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=postgres_url, llm_preload=False)
    services = build_services(settings, llm=llm_pool)
    try:
        card = cards.parse_card_json(
            {
                "spec": "chara_card_v3",
                "spec_version": "3.0",
                "data": {
                    "name": "Pg",
                    "first_mes": "Hello {{user}}",
                    "extensions": {"custom": {"nested": [1, "two", None]}},
                    "character_book": {"entries": [{"keys": ["k"], "content": "lore"}]},
                },
            }
        )
        blob = cards.write_png_card(card, None)
        agent = services.agents.import_card("pg.png", blob)
        back, _ = cards.read_png_card(services.agents.export_card(agent.id, "png").content)
        assert back.data.dump() == card.data.dump()
        conv = services.chat.create_conversation(agent.id, "Ana")
        assert conv.messages[0].content == "Hello Ana"
        services.agents.delete_agent(agent.id)
        assert services.agents.list_agents() == []
    finally:
        services.close()
