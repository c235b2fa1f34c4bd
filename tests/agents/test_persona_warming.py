"""Persona warming on the real llama.cpp engine (the bundled model in f32, greedy).

What the engine says it computed is the evidence: a reply's ``cached_tokens`` (llama.cpp's
``cache_n``) counts the prompt tokens it did not compute, so a first turn on a fresh engine
that reports the persona prefix cached restored it from disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.llm.kv_cache import KVStore
from agents.llm.llamacpp_engine import LlamaCppEngine
from agents.llm.pool import LLMPool
from agents.persona_warming import PersonaWarmer, fixed_prefix
from agents.prompt import build_prompt
from agents.prompt_parts import ChatExtras
from agents.schema import CardData, ChatMessage, GenerationSettings
from agents.service import AgentService
from core.db import Database
from core.principal import SYSTEM
from core.settings import Settings
from tests.agents.test_llamacpp import engine_settings, hf_dir  # noqa: F401 (a fixture)

pytestmark = pytest.mark.model

GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=24, repetition_penalty=1.0)
CARD = CardData(
    name="Mira",
    description=(
        "Mira is a lighthouse keeper on a windswept island at the edge of the northern sea. "
        "She has kept the light for twenty years, since her mother handed her the keys, and "
        "she knows every rock, current and seabird of the coast by name. She mends nets, "
        "bakes dark rye bread in a stone oven and writes the weather into a leather logbook "
        "every morning at six. Ships that pass at night flash their lamps to greet her. "
    )
    * 3,
    personality="patient, dry-humoured, practical, fond of old sea songs",
    scenario="A storm has stranded {{user}} on Mira's island for the night.",
    mes_example=(
        "<START>\n{{user}}: Is the light ever dark?\n"
        "{{char}}: Not while I breathe. Not one night in twenty years.\n"
        "<START>\n{{user}}: What do you eat out here?\n"
        "{{char}}: Fish, rye bread, and whatever the supply boat forgets to take back."
    ),
)


def _messages(
    engine: LlamaCppEngine, card: CardData, text: str, persona: str = ""
) -> list[ChatMessage]:
    return build_prompt(
        card,
        [ChatMessage(role="user", content=text)],
        user_name="User",
        count_tokens=engine.count_tokens,
        context_window=engine.context_window,
        max_new_tokens=GREEDY.max_new_tokens,
        extras=ChatExtras(persona=persona),
    ).messages


def _prefix(engine: LlamaCppEngine, card: CardData) -> list[int]:
    return fixed_prefix(
        card, engine.encode_chat, engine.count_tokens, engine.context_window, GREEDY.max_new_tokens
    )


def _reply(engine: LlamaCppEngine, messages: list[ChatMessage]) -> tuple[str, Any]:
    from agents.llm.base import StreamResult

    result = StreamResult()
    text = "".join(engine.generate(None, messages, GREEDY, result))
    return text, result


@pytest.fixture
def settings(tmp_path: Path, model_cache_dir: Path, hf_dir: Path) -> Settings:  # noqa: F811
    return engine_settings(tmp_path / "data", model_cache_dir, str(hf_dir))


@pytest.fixture
def engines() -> Iterator[list[LlamaCppEngine]]:
    made: list[LlamaCppEngine] = []
    yield made
    for engine in made:
        engine.unload()


def _engine(settings: Settings, made: list[LlamaCppEngine], **extra: Any) -> LlamaCppEngine:
    if extra:
        settings = settings.model_copy(update={"llm": settings.llm.model_copy(update=extra)})
    engine = LlamaCppEngine(settings)
    engine.load()
    made.append(engine)
    return engine


def test_a_warmed_first_reply_equals_the_cold_one_and_survives_a_restart(
    settings: Settings, engines: list[LlamaCppEngine]
) -> None:
    cold = _engine(settings, engines, persona_warming=False)
    messages = _messages(cold, CARD, "Good evening! May I dry my coat by your fire?")
    reference, cold_result = _reply(cold, messages)
    assert cold_result.cached_tokens == 0 and reference
    cold.unload()

    warm = _engine(settings, engines)
    prefix = _prefix(warm, CARD)
    assert len(prefix) > 300  # the whole system message, examples included
    entry = warm.warm(None, prefix, "agent-1")
    assert entry is not None and entry.agents == ("agent-1",)
    assert warm.kv is not None and warm.kv.path(entry).is_file()
    assert (warm.kv.folder / f"{entry.name}.json").is_file()
    warm.unload()

    restarted = _engine(settings, engines)  # empty slots: only the file can hold the prefix
    text, result = _reply(restarted, messages)
    assert text == reference
    assert result.cached_tokens >= len(prefix) - 1  # the prefix was restored, not computed
    assert result.prompt_tokens - result.cached_tokens < 30

    # Another new chat, with a persona: the persona follows the card's text and examples,
    # so it still starts from the warmed prefix (on a fresh engine: from the file).
    again = _engine(settings, engines)
    persona_chat = _messages(again, CARD, "Hello?", persona="User is a shy botanist.")
    _, persona_result = _reply(again, persona_chat)
    assert persona_result.cached_tokens >= len(prefix) - 8


def test_a_corrupted_file_is_ignored_and_replaced(
    settings: Settings, engines: list[LlamaCppEngine]
) -> None:
    engine = _engine(settings, engines)
    prefix = _prefix(engine, CARD)
    entry = engine.warm(None, prefix, "agent-1")
    assert entry is not None and engine.kv is not None
    path = engine.kv.path(entry)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    engine.unload()
    KVStore._stores.clear()  # a restart: the new process has verified nothing

    restarted = _engine(settings, engines)
    _, result = _reply(restarted, _messages(restarted, CARD, "Hello?"))
    assert result.cached_tokens == 0  # the damaged file was not restored
    assert not path.exists()

    replaced = restarted.warm(None, prefix, "agent-1")
    assert replaced is not None and replaced.name == entry.name
    assert path.is_file() and restarted.kv is not None
    KVStore._stores.clear()
    fresh = KVStore.for_folder(settings.kv_cache_dir, settings.llm.kv_cache_mb)
    assert fresh.find(replaced.model, None, prefix) is not None  # its checksum holds


def test_a_card_edit_warms_a_new_key_and_drops_the_old_file(
    settings: Settings, engines: list[LlamaCppEngine]
) -> None:
    engine = _engine(settings, engines)
    first = engine.warm(None, _prefix(engine, CARD), "agent-1")
    edited = CARD.model_copy(update={"personality": "impatient, loud, fond of shanties"})
    second = engine.warm(None, _prefix(engine, edited), "agent-1")
    assert first is not None and second is not None and engine.kv is not None
    assert first.name != second.name
    assert not engine.kv.path(first).exists() and engine.kv.path(second).is_file()


class _AllowAll:
    def require_owner(self, *_: Any) -> None: ...

    require_address = require_creator = require_owner


def test_saving_warms_in_the_background_and_deleting_the_agent_deletes_its_files(
    settings: Settings, engines: list[LlamaCppEngine]
) -> None:
    settings = settings.model_copy(
        update={"llm": settings.llm.model_copy(update={"preload": True})}
    )
    settings.ensure_dirs()
    db = Database(settings.resolved_database_url)
    db.migrate()
    agents = AgentService(settings, db)
    agents.owner_check = _AllowAll()  # type: ignore[assignment]
    pool = LLMPool(settings)
    warmer = PersonaWarmer(settings, agents, pool)
    agents.listeners.append(warmer)
    try:
        agent = agents.create_agent(CARD.model_dump(), principal=SYSTEM)
        assert warmer.wait_idle(600)
        store = warmer.store
        saved = [e for e in store.entries() if agent.id in e.agents]
        assert len(saved) == 1 and store.path(saved[0]).is_file()

        agents.update_agent(agent.id, {"scenario": "A calm summer night."}, principal=SYSTEM)
        assert warmer.wait_idle(600)
        edited = [e for e in store.entries() if agent.id in e.agents]
        assert len(edited) == 1 and edited[0].name != saved[0].name
        assert not store.path(saved[0]).exists()

        agents.delete_agent(agent.id, principal=SYSTEM)
        assert store.entries() == [] and list(store.folder.glob("*.bin")) == []
    finally:
        warmer.close()
        engines.extend(pool._engines.values())
        db.dispose()
