"""The prompt inspector panel's rendering and handlers, without a browser."""

from __future__ import annotations

from typing import Any

from agents.prompt_preview import KnowledgeItem, LoreItem, PreviewPart, PromptPreview
from container import Services
from core.principal import ANONYMOUS, SYSTEM
from ui.panels.inspector import handlers


def _view(**changes: Any) -> PromptPreview:
    values: dict[str, Any] = {
        "agent_id": "a1",
        "model": "toy",
        "context_window": 1000,
        "max_new_tokens": 100,
        "prompt_tokens": 150,
        "budgeted_tokens": 150,
        "parts": [
            PreviewPart(
                kind="lore",
                label="Lorebook: <Horn>",
                message=0,
                role="system",
                text="a < b",
                tokens=50,
                key="fog",
            )
        ],
        "messages": [],
        "rendered": None,
        "lore_fired": [LoreItem(name="Horn", keys=["fog"], key="fog", tokens=50, content="x")],
        "lore_left_out": [],
        "knowledge_used": [],
        "knowledge_left_out": [],
        "examples_left_out": 0,
        "dropped_history": 0,
        "truncated_last_turn": False,
    }
    return PromptPreview(**{**values, **changes})


def test_parts_are_escaped_and_barred_against_the_window() -> None:
    html = handlers.render_parts(_view())
    assert "Lorebook: &lt;Horn&gt;" in html and "a &lt; b" in html
    assert "key: fog" in html and "50 tokens" in html
    assert 'style="width:5.00%"' in html  # 50 of 1000
    assert "250 / 1000" in html and 'style="width:25.00%"' in html  # prompt and reply


def test_the_summary_and_lore_say_what_was_left_out() -> None:
    plain = _view()
    assert "150 prompt tokens" in handlers.render_summary(plain)
    assert "Left out" not in handlers.render_summary(plain)
    crowded = _view(
        dropped_history=3,
        examples_left_out=1,
        lore_left_out=[LoreItem(name="1911", keys=["storm"], key="storm", tokens=9, content="")],
        knowledge_left_out=[KnowledgeItem(marker=2, document="log.pdf", text="t", tokens=4)],
        truncated_last_turn=True,
    )
    summary = handlers.render_summary(crowded)
    assert "3 older messages, 1 example dialogues, 1 lorebook entries, 1 knowledge" in summary
    assert "cut from its start" in summary
    lore = handlers.render_lore(crowded)
    assert "**Horn**: key `fog`" in lore
    assert "left out (over the book's token budget)" in lore and "**1911**: key `storm`" in lore
    assert "[2] log.pdf" in lore


def test_without_an_agent_the_panel_asks_for_one() -> None:
    shown = handlers.preview(None, None, "hi", None, principal=ANONYMOUS)  # type: ignore[arg-type]
    assert "Pick a saved agent first" in shown["status"]
    sent = list(handlers.send_test(None, None, [], "hi", principal=ANONYMOUS))  # type: ignore[arg-type]
    assert "Pick a saved agent first" in sent[0]["test_status"]


def test_the_conversation_list_is_the_callers_own_chats(services: Services) -> None:
    from core.principal import Principal

    olga = Principal(address=None, visitor_id="olga-browser")
    ivan = Principal(address=None, visitor_id="ivan-browser")
    agent = services.agents.create_agent({"name": "Mira"}, principal=SYSTEM)
    conv = services.chat.create_conversation(agent.id, principal=olga)

    mine = handlers.conversations(services, agent.id, conv.id, principal=olga)["conversation"]
    assert [v for _, v in mine["choices"]] == ["", conv.id] and mine["value"] == conv.id
    theirs = handlers.conversations(services, agent.id, conv.id, principal=ivan)["conversation"]
    assert theirs["choices"] == [handlers.NO_CONVERSATION] and theirs["value"] == ""
