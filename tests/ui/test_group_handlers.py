"""The group chat and chat file handlers without a browser: what a mistake shows."""

from __future__ import annotations

from pathlib import Path

from agents.records import ConversationRecord
from container import Services
from core.principal import SYSTEM
from ui.chat import group_handlers, transfer_handlers


def _agent(services: Services, name: str) -> str:
    return services.agents.create_agent(
        {"name": name, "first_mes": f"I am {name}."}, principal=SYSTEM
    ).id


def _conversations(services: Services) -> int:
    with services.db.session() as s:
        return s.query(ConversationRecord).count()


def test_a_group_needs_two_agents(services: Services) -> None:
    one = _agent(services, "Mira")
    shown = group_handlers.start_group(services, [one], "round_robin", "Ned", principal=SYSTEM)
    assert "at least two" in shown["status"]
    assert _conversations(services) == 0


def test_starting_a_group_opens_it_and_offers_its_members(services: Services) -> None:
    ids = [_agent(services, n) for n in ("Mira", "Tobin")]
    shown = group_handlers.start_group(services, ids, "manual", "Ned", principal=SYSTEM)
    assert shown["agent"] == ids[0]
    assert [m["content"] for m in shown["chatbot"]] == [
        "**Mira:** I am Mira.",
        "**Tobin:** I am Tobin.",
    ]
    conv_id = shown["conversation"]["value"]
    speakers = group_handlers.show_speakers(services, conv_id, principal=SYSTEM)
    assert speakers["speaker"]["choices"] == [("Mira", ids[0]), ("Tobin", ids[1])]
    assert speakers["speaker_row"]["visible"] is True
    single = services.chat.create_conversation(ids[0], principal=SYSTEM)
    shown = group_handlers.show_speakers(services, single.id, principal=SYSTEM)
    assert shown["speaker_row"]["visible"] is False


def test_export_needs_a_conversation(services: Services) -> None:
    shown = transfer_handlers.export_chat(services, None, "jsonl", principal=SYSTEM)
    assert "open a conversation first" in shown["status"]


def test_a_malformed_import_names_the_line_and_stores_nothing(
    services: Services, tmp_path: Path
) -> None:
    agent_id = _agent(services, "Mira")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_name": "Ned"}\n{"name": "Mira", "mes": "hi"}\nnot json\n')
    shown = transfer_handlers.import_chat(services, agent_id, [], str(bad), principal=SYSTEM)
    assert "bad.jsonl line 3" in shown["status"]
    assert _conversations(services) == 0
    shown = transfer_handlers.import_chat(services, None, [], str(bad), principal=SYSTEM)
    assert "pick the agent" in shown["status"]
