"""Migration 0011 fills the gallery's search columns of the agents that already exist."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from agents.agent_search import search_columns
from core.db import MIGRATIONS_DIR, make_engine


def _upgrade(engine: object, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:  # type: ignore[attr-defined]
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def test_upgrade_fills_search_columns_and_keeps_conversations(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(engine, "0010_persona")
    with engine.begin() as conn:
        for agent_id, name, data in [
            ("a1", "Émile  Zola", '{"name": "x", "tags": ["Poet", "poet", "a|b", 3, " "]}'),
            ("a2", "Bare", '{"name": "Bare"}'),
        ]:
            conn.execute(
                text(
                    "INSERT INTO agents (id, name, spec, card_data, card_extra, content_hash, "
                    "generation, version, visibility, created_at, updated_at) VALUES (:id, "
                    ":name, 'chara_card_v3', :data, '{}', '0x00', '{}', 1, 'public', "
                    "'2026-01-01', '2026-01-01')"
                ),
                {"id": agent_id, "name": name, "data": data},
            )
        conn.execute(
            text(
                "INSERT INTO conversations (id, agent_id, title, user_name, created_at, "
                "updated_at) VALUES ('c1', 'a1', 't', 'u', '2026-01-01', '2026-01-01')"
            )
        )
    _upgrade(engine, "head")
    with engine.connect() as conn:
        rows = dict(
            (r[0], (r[1], r[2]))
            for r in conn.execute(text("SELECT id, name_key, tags_text FROM agents"))
        )
        assert conn.execute(text("SELECT count(*) FROM conversations")).scalar() == 1
    assert rows == {"a1": ("emile zola", "|poet|a b|"), "a2": ("bare", "")}
    # The service writes the same values for a new card.
    assert search_columns("Émile  Zola", ["Poet", "poet", "a|b", " "]) == {
        "name_key": "emile zola",
        "tags_text": "|poet|a b|",
    }
    engine.dispose()
