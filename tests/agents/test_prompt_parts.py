"""A conversation's parts in the assembled prompt: persona, author's note, summary, pins."""

from __future__ import annotations

from typing import Any

import pytest

from agents.prompt import MESSAGE_OVERHEAD_TOKENS, PROMPT_OVERHEAD_TOKENS, build_prompt
from agents.prompt_parts import AuthorsNote, ChatExtras
from agents.schema import CardData, ChatMessage, LorebookEntry


def words(text: str) -> int:
    return len(text.split())


def card(**fields: Any) -> CardData:
    base: dict[str, Any] = {
        "name": "Aria",
        "description": "{{char}} is a ship's navigator who talks to {{user}}.",
        "scenario": "{{user}} boards the ship.",
    }
    base.update(fields)
    return CardData(**base)


def chat(n: int) -> list[ChatMessage]:
    """``n`` alternating messages ending with the user, six words each."""
    return [
        ChatMessage(role="assistant" if (n - i) % 2 == 0 else "user", content=f"turn{i} a b c d e")
        for i in range(n)
    ]


def build(history: list[ChatMessage], extras: ChatExtras, window: int = 2000, **kw: Any) -> Any:
    return build_prompt(
        kw.pop("card", card()),
        history,
        user_name=kw.pop("user_name", "Kit"),
        count_tokens=words,
        context_window=window,
        max_new_tokens=20,
        extras=extras,
        **kw,
    )


def test_persona_closes_the_story_string_and_the_summary_follows_it() -> None:
    lore = LorebookEntry(keys=["turn1"], content="After-char lore.", position="after_char")
    c = card(character_book={"entries": [lore.model_dump()]}, post_history_instructions="Stay.")
    extras = ChatExtras(persona="{{user}} is a stowaway with a limp.", summary="They met at dawn.")
    out = build(chat(4), extras, card=c, user_name="Kit")
    system = out.messages[0].content
    order = [
        "Aria is a ship's navigator who talks to Kit.",
        "Scenario: Kit boards the ship.",
        "After-char lore.",
        "Kit is a stowaway with a limp.",
        "[Summary: They met at dawn.]",
    ]
    assert [system.index(part) for part in order] == sorted(system.index(p) for p in order)
    assert out.messages[-1].content == "Stay."  # post-history still last


@pytest.mark.parametrize("depth", [0, 1, 4, 50])
def test_authors_note_sits_depth_messages_from_the_end(depth: int) -> None:
    history = chat(8)
    note = AuthorsNote("[Style: terse.]", depth=depth, frequency=1)
    out = build(history, ChatExtras(authors_note=note, user_turns=4))
    body = out.messages[1:]
    at = max(0, len(history) - depth)
    assert body[at] == ChatMessage(role="system", content="[Style: terse.]")
    assert [m for i, m in enumerate(body) if i != at] == history


@pytest.mark.parametrize(
    ("frequency", "user_turns", "due"),
    [
        (1, 1, True),
        (1, 7, True),
        (3, 3, True),
        (3, 6, True),
        (3, 4, False),
        (3, 2, False),
        (0, 4, False),
    ],
)
def test_authors_note_frequency_counts_user_turns(
    frequency: int, user_turns: int, due: bool
) -> None:
    note = AuthorsNote("[Note]", depth=2, frequency=frequency)
    out = build(chat(6), ChatExtras(authors_note=note, user_turns=user_turns))
    assert any(m.content == "[Note]" for m in out.messages) is due


def test_pinned_messages_survive_trimming_in_their_place() -> None:
    history = chat(40)
    pinned = {1, 6}
    out = build(history, ChatExtras(pinned=frozenset(pinned)), window=150)
    body = out.messages[1:]
    assert out.dropped_history > 0
    assert body[:2] == [history[1], history[6]]  # old pins first, in order
    assert body[2:] == history[len(history) - len(body) + 2 :]  # then the newest suffix
    assert body[-1] == history[-1]
    cost = sum(words(m.content) + MESSAGE_OVERHEAD_TOKENS for m in out.messages)
    assert out.prompt_tokens == cost + PROMPT_OVERHEAD_TOKENS <= 150 - 20
    unpinned = build(history, ChatExtras(), window=150)
    assert history[1] not in unpinned.messages and history[6] not in unpinned.messages


def test_note_and_summary_cost_come_off_the_history() -> None:
    history = chat(40)
    plain = build(history, ChatExtras(), window=200)
    note = AuthorsNote("one two three four five six seven eight nine ten", depth=2)
    extras = ChatExtras(summary="s " * 30, authors_note=note, user_turns=20)
    full = build(history, extras, window=200)
    assert full.dropped_history > plain.dropped_history
    assert full.prompt_tokens <= 200 - 20
