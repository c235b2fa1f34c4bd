"""The same store on PostgreSQL: migrations and a full agent + chat round trip.

The throwaway cluster is the session fixture ``postgres_url`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from agents import cards
from agents.llm.pool import LLMPool
from container import build_services
from core.db import Base, Database
from core.principal import SYSTEM
from core.settings import Settings


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
        agent = services.agents.import_card("pg.png", blob, principal=SYSTEM)
        back, _ = cards.read_png_card(services.agents.export_card(agent.id, "png").content)
        assert back.data.dump() == cards.card_to_json(card, "v3")["data"]  # complete V3
        conv = services.chat.create_conversation(agent.id, "Ana", principal=SYSTEM)
        assert conv.messages[0].content == "Hello Ana"
        services.agents.delete_agent(agent.id, principal=SYSTEM)
        assert services.agents.list_agents() == []
    finally:
        services.close()
