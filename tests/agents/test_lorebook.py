"""Lorebook activation follows SillyTavern's World Info rules for a card's character_book."""

from __future__ import annotations

from typing import Any

import pytest

from agents.lorebook import MAX_SCAN_PASSES, activate, split_by_position
from agents.schema import CharacterBook, LorebookEntry


def words(text: str) -> int:
    return len(text.split())


def entry(content: str, keys: list[str] | None = None, **fields: Any) -> LorebookEntry:
    return LorebookEntry(keys=keys or [], content=content, **fields)


def book(*entries: LorebookEntry, **fields: Any) -> CharacterBook:
    return CharacterBook(entries=list(entries), **fields)


def active(b: CharacterBook, history: list[str], **kwargs: Any) -> list[str]:
    return [hit.content for hit in activate(b, history, words, **kwargs)]


def test_key_hit_and_miss() -> None:
    b = book(entry("Dragons breathe fire.", ["dragon"]), entry("Elves live long.", ["elf"]))
    assert active(b, ["I saw a dragon yesterday"]) == ["Dragons breathe fire."]
    assert active(b, ["Nothing to see"]) == []


def test_case_insensitive_by_default_and_case_sensitive_when_asked() -> None:
    loose = book(entry("lore", ["Dragon"]))
    strict = book(entry("lore", ["Dragon"], case_sensitive=True))
    assert active(loose, ["a DRAGON appears"]) == ["lore"]
    assert active(strict, ["a dragon appears"]) == []
    assert active(strict, ["a Dragon appears"]) == ["lore"]


def test_case_sensitive_from_st_extensions_when_field_absent() -> None:
    b = book(entry("lore", ["Dragon"], extensions={"case_sensitive": True}))
    assert active(b, ["a dragon"]) == []


def test_regex_key_with_slashes_uses_its_own_flags() -> None:
    b = book(entry("lore", [r"/dra(g|k)on\b/i"]))
    assert active(b, ["the DRAKON sleeps"]) == ["lore"]
    assert active(b, ["dragons sleep"]) == []  # \b: "dragons" is not "dragon"
    case_bound = book(entry("lore", ["/Dragon/"]))
    assert active(case_bound, ["a dragon"]) == []


def test_use_regex_field_makes_plain_keys_patterns() -> None:
    b = book(entry("lore", [r"sw(or|ea)d"], use_regex=True))
    assert active(b, ["He drew his SWORD"]) == ["lore"]
    assert active(book(entry("lore", [r"sw(or|ea)d"])), ["He drew his sword"]) == []


def test_invalid_regex_falls_back_to_a_plain_key() -> None:
    b = book(entry("lore", ["(unclosed"], use_regex=True))
    assert active(b, ["text with (unclosed paren"]) == ["lore"]


def test_whole_words_match_only_whole_words() -> None:
    whole = {"match_whole_words": True}
    b = book(entry("cats", ["cat"], extensions=whole))
    assert active(b, ["a category error"]) == []
    assert active(b, ["the cat, asleep"]) == ["cats"]
    assert active(book(entry("cats", ["cat"])), ["a category error"]) == ["cats"]
    # Multi-word keys stay substrings, as in SillyTavern.
    multi = book(entry("tea", ["green tea"], extensions=whole))
    assert active(multi, ["greenish green teapot"]) == ["tea"]


def test_scan_depth_excludes_an_old_mention() -> None:
    history = ["the dragon was here", "hello", "how are you", "fine"]
    assert active(book(entry("lore", ["dragon"]), scan_depth=3), history) == []
    assert active(book(entry("lore", ["dragon"]), scan_depth=4), history) == ["lore"]
    # Without a book value the caller's default depth applies.
    assert active(book(entry("lore", ["dragon"])), history, default_scan_depth=2) == []
    # Per-entry ST override beats the book's depth.
    deep = entry("lore", ["dragon"], extensions={"scan_depth": 10})
    assert active(book(deep, scan_depth=1), history) == ["lore"]


def test_scan_depth_zero_scans_no_chat() -> None:
    b = book(entry("lore", ["dragon"]), entry("always", constant=True), scan_depth=0)
    assert active(b, ["dragon"]) == ["always"]


def test_constant_always_active_and_disabled_never() -> None:
    b = book(
        entry("always", constant=True),
        entry("off", ["dragon"], enabled=False),
        entry("off constant", constant=True, enabled=False),
    )
    assert active(b, ["dragon"]) == ["always"]
    assert active(b, []) == ["always"]


def test_blank_keys_are_ignored() -> None:
    b = book(entry("lore", ["", "  "]))
    assert active(b, ["anything at all"]) == []


@pytest.mark.parametrize(
    ("logic", "chat", "expected"),
    [
        (None, "dragon", False),  # AND_ANY by default: a secondary key must match
        (None, "dragon in the cave", True),
        (0, "dragon at night", True),
        (1, "dragon in the cave at night", False),  # NOT_ALL: all match -> no
        (1, "dragon in the cave", True),
        (2, "dragon in the cave", False),  # NOT_ANY
        (2, "dragon", True),
        (3, "dragon in the cave", False),  # AND_ALL
        (3, "dragon in the cave at night", True),
        (3, "a cave at night", False),  # the primary key is always required
    ],
)
def test_selective_logic(logic: int | None, chat: str, expected: bool) -> None:
    ext = {} if logic is None else {"selectiveLogic": logic}
    e = entry("lore", ["dragon"], selective=True, secondary_keys=["cave", "night"], extensions=ext)
    assert (active(book(e), [chat]) == ["lore"]) is expected


def test_secondary_keys_ignored_unless_selective_and_empty_secondaries_ignored() -> None:
    not_selective = entry("a", ["dragon"], selective=False, secondary_keys=["cave"])
    no_secondaries = entry("b", ["dragon"], selective=True, secondary_keys=[])
    assert active(book(not_selective, no_secondaries), ["dragon"]) == ["a", "b"]


def test_output_in_ascending_insertion_order_split_by_position() -> None:
    b = book(
        entry("third", ["x"], insertion_order=30),
        entry("first", ["x"], insertion_order=10, position="after_char"),
        entry("second", ["x"], insertion_order=20),
        entry("st after", ["x"], insertion_order=40, extensions={"position": 1}),
    )
    hits = activate(b, ["x"], words)
    assert [h.content for h in hits] == ["first", "second", "third", "st after"]
    groups = split_by_position(hits)
    assert [h.content for h in groups["before_char"]] == ["second", "third"]
    assert [h.content for h in groups["after_char"]] == ["first", "st after"]


def test_budget_drops_the_lower_order_entry() -> None:
    b = book(
        entry("low order entry of five", ["x"], insertion_order=1),
        entry("high order entry of five", ["x"], insertion_order=9),
        token_budget=7,
    )
    assert active(b, ["x"]) == ["high order entry of five"]


def test_budget_stops_at_the_first_overflow() -> None:
    b = book(
        entry("one two three", ["x"], insertion_order=9),
        entry("four five six seven", ["x"], insertion_order=5),  # overflows: 3 + 4 > 5
        entry("tiny", ["x"], insertion_order=1),  # would fit, but the scan has stopped
        token_budget=5,
    )
    assert active(b, ["x"]) == ["one two three"]


def test_budget_constants_first_then_priority_breaks_ties() -> None:
    b = book(
        entry("keyed high order", ["x"], insertion_order=100),
        entry("constant low order", constant=True, insertion_order=0),
        token_budget=4,
    )
    assert active(b, ["x"]) == ["constant low order"]
    tie = book(
        entry("low priority entry", ["x"], insertion_order=5, priority=1),
        entry("high priority entry", ["x"], insertion_order=5, priority=7),
        token_budget=3,
    )
    assert active(tie, ["x"]) == ["high priority entry"]


def test_default_budget_applies_without_a_book_value() -> None:
    b = book(entry("a b c", ["x"]), entry("d e f", ["x"]))
    assert active(b, ["x"], default_token_budget=3) == ["a b c"]
    assert active(book(entry("a b c", ["x"]), token_budget=0), ["x"], default_token_budget=3) == [
        "a b c"
    ]


def test_recursive_scanning_chains_entries() -> None:
    entries = (
        entry("The castle holds the crown.", ["castle"], insertion_order=1),
        entry("The crown is cursed.", ["crown"], insertion_order=2),
    )
    assert active(book(*entries), ["to the castle"]) == ["The castle holds the crown."]
    assert active(book(*entries, recursive_scanning=True), ["to the castle"]) == [
        "The castle holds the crown.",
        "The crown is cursed.",
    ]


def test_prevent_and_exclude_recursion() -> None:
    prevent = book(
        entry("mentions crown", ["castle"], extensions={"prevent_recursion": True}),
        entry("crown lore", ["crown"]),
        recursive_scanning=True,
    )
    assert active(prevent, ["castle"]) == ["mentions crown"]
    exclude = book(
        entry("mentions crown", ["castle"]),
        entry("crown lore", ["crown"], extensions={"exclude_recursion": True}),
        recursive_scanning=True,
    )
    assert active(exclude, ["castle"]) == ["mentions crown"]
    assert active(exclude, ["castle crown"]) == ["mentions crown", "crown lore"]


def test_recursion_is_bounded() -> None:
    chain = [
        entry(f"leads to k{i + 1}", [f"k{i}"], insertion_order=i)
        for i in range(MAX_SCAN_PASSES + 3)
    ]
    hits = active(book(*chain, recursive_scanning=True), ["k0"])
    assert hits == [f"leads to k{i + 1}" for i in range(MAX_SCAN_PASSES)]


def test_macros_rendered_in_keys_and_content() -> None:
    b = book(entry("{{char}} fears {{user}}.", ["{{user}}"]))

    def render(text: str) -> str:
        return text.replace("{{char}}", "Aria").replace("{{user}}", "Bob")

    hits = activate(b, ["Bob waves"], words, render=render)
    assert [h.content for h in hits] == ["Aria fears Bob."]
    assert hits[0].tokens == 3


def test_no_book_or_empty_content() -> None:
    assert activate(None, ["x"], words) == []
    assert active(book(entry("   ", ["x"])), ["x"]) == []
