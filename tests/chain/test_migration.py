"""Migration 0006 on a database that already holds agents and chats loses nothing.

It replaces ``agents.token_id`` (integer) with a decimal-string column. Done by copying the
table (Alembic's SQLite batch mode), SQLite would drop ``agents`` and, with foreign keys on,
cascade-delete every conversation: this test is what keeps the in-place ALTERs honest.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from core.db import MIGRATIONS_DIR, make_engine


def _upgrade(engine: object, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:  # type: ignore[attr-defined]
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def test_upgrade_keeps_agents_and_their_conversations(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agents (id, name, spec, card_data, card_extra, content_hash, "
                "generation, version, created_at, updated_at) VALUES ('a1', 'Old', "
                "'chara_card_v3', '{\"name\": \"Old\"}', '{}', '0x00', '{}', 1, "
                "'2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO conversations (id, agent_id, title, user_name, created_at, "
                "updated_at) VALUES ('c1', 'a1', 't', 'u', '2026-01-01', '2026-01-01')"
            )
        )
    _upgrade(engine, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM conversations")).scalar() == 1
        row = conn.execute(text("SELECT name, token_id, mint_state FROM agents")).one()
        assert tuple(row) == ("Old", None, None)
    columns = {c["name"]: c for c in inspect(engine).get_columns("agents")}
    assert str(columns["token_id"]["type"]).startswith("VARCHAR")
    engine.dispose()
