"""Storage: migrations match the tables, SQLite runs in WAL, failed imports leave no trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

import agents.records  # noqa: F401  (registers the tables)
from container import Services
from core.db import Base, Database
from core.errors import UnsafePathError
from core.files import atomic_write, safe_join
from core.principal import SYSTEM

CARD = json.dumps({"spec": "chara_card_v2", "data": {"name": "Ivy", "description": "x"}}).encode()


def test_migrations_create_exactly_the_tables_the_code_uses(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()
    db.migrate()  # idempotent
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models changed without a migration: {diff}"
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.dispose()


def _agent_dirs(services: Services) -> list[str]:
    return sorted(p.name for p in services.settings.agents_dir.iterdir())


def test_import_that_fails_while_storing_files_leaves_nothing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("agents.service.replace_dir", boom)
    with pytest.raises(OSError):
        services.agents.import_card("ivy.json", CARD, principal=SYSTEM)
    assert services.agents.list_agents() == []
    assert _agent_dirs(services) == []


def test_import_that_fails_in_the_database_leaves_no_files(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = services.agents.create_agent({"name": "Kept"}, principal=SYSTEM)

    def boom(*_args: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(services.agents, "_store_card", boom)
    with pytest.raises(RuntimeError):
        services.agents.import_card("ivy.json", CARD, principal=SYSTEM)
    assert [a.id for a in services.agents.list_agents()] == [kept.id]
    dirs = _agent_dirs(services)
    assert kept.id in dirs and not any(name.startswith(".staging") for name in dirs), dirs


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write(target, b"old")

    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "C:\\x", "a\\b", ""])
def test_safe_join_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, bad)
    assert safe_join(tmp_path, "a/b.png") == (tmp_path / "a" / "b.png").resolve()


def test_upgrade_keeps_every_earlier_reply_and_greeting_as_versions(tmp_path: Path) -> None:
    """Chats stored before swipes: greetings show their first version, replies their newest."""
    from alembic import command
    from alembic.config import Config

    from core.db import MIGRATIONS_DIR

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008")
        conn.execute(
            text(
                "INSERT INTO agents (id, name, spec, card_data, card_extra, content_hash, "
                "generation, version, created_at, updated_at) VALUES ('a', 'Ivy', 'v2', '{}', "
                "'{}', '0x', '{}', 1, '2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO conversations (id, agent_id, title, user_name, next_position, "
                "created_at, updated_at) VALUES ('c', 'a', '', 'User', 3, '2026-01-01', "
                "'2026-01-01')"
            )
        )
        rows = [
            ("g", 0, "assistant", "Hello.", ["Hi there."]),
            ("u", 1, "user", "Hey", []),
            ("r", 2, "assistant", "Third try", ["First try", "Second try"]),
        ]
        for mid, position, role, content, alternatives in rows:
            conn.execute(
                text(
                    "INSERT INTO messages (id, conversation_id, position, role, content, "
                    "alternatives, created_at) VALUES (:i, 'c', :p, :r, :c, :a, '2026-01-01')"
                ),
                {"i": mid, "p": position, "r": role, "c": content, "a": json.dumps(alternatives)},
            )
    db.migrate()
    with db.engine.connect() as conn:
        got = {
            mid: (json.loads(versions), selected, content)
            for mid, versions, selected, content in conn.execute(
                text("SELECT id, versions, selected, content FROM messages")
            )
        }
    db.dispose()
    assert got == {
        "g": (["Hello.", "Hi there."], 0, "Hello."),
        "u": (["Hey"], 0, "Hey"),
        "r": (["First try", "Second try", "Third try"], 2, "Third try"),
    }
