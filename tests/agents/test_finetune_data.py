"""Training data: chat files in, dialogues out; rendering with the real chat template; the split;
the style score. Bad input gets a message that names the file, the line and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agents.finetune.data import (
    IGNORE_INDEX,
    WINDOW_MESSAGES,
    Dialogue,
    Renderer,
    UploadedChat,
    collect,
    parse_chat_file,
    split,
)
from agents.finetune.evaluate import StyleScorer
from agents.finetune.schema import FinetuneSettings
from agents.schema import CardData, ChatMessage
from core.errors import ChatFileError, NotEnoughExamplesError
from core.settings import Settings
from tests.agents.finetune_world import pirate_examples


def _jsonl(*rows: Any) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


@pytest.fixture(scope="module")
def tokenizer(model_cache_dir: Path) -> Any:
    from transformers import AutoTokenizer

    from agents.llm.model_source import resolve_model

    source = resolve_model(Settings(data_dir=model_cache_dir, model_cache_dir=model_cache_dir))
    return AutoTokenizer.from_pretrained(source.path)


# ----- chat files ------------------------------------------------------------------------------
def test_a_sillytavern_chat_becomes_dialogues_of_user_and_character_turns() -> None:
    chat = _jsonl(
        {"user_name": "Sam", "character_name": "Brine", "create_date": "2025-01-01@10h00m00s"},
        {"name": "Brine", "is_user": False, "mes": "Arr, welcome!"},
        {"name": "Sam", "is_user": True, "mes": "Hi there"},
        {"name": "System", "is_user": False, "is_system": True, "mes": "[hidden note]"},
        {"name": "Brine", "is_user": False, "mes": "Ahoy."},
        {"name": "Brine", "is_user": False, "mes": "*grins*"},  # joined to the turn before
        {"name": "Polly", "is_user": False, "mes": "Squawk!"},  # another group member
        {"name": "Brine", "is_user": False, "mes": "Quiet, Polly."},
    )
    [dialogue] = parse_chat_file("brine.jsonl", chat, "Brine")
    assert dialogue.source == "chat:brine.jsonl" and dialogue.user == "Sam"
    assert [(m.role, m.content) for m in dialogue.messages] == [
        ("assistant", "Arr, welcome!"),
        ("user", "Hi there"),
        ("assistant", "Ahoy.\n\n*grins*"),
        ("user", "Polly: Squawk!"),
        ("assistant", "Quiet, Polly."),
    ]


def test_plain_jsonl_messages_and_openai_style_lines_both_read() -> None:
    turns = []
    for i in range(12):
        turns += [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
    long_chat = parse_chat_file(
        "log.jsonl", _jsonl({"role": "system", "content": "persona"}, *turns), "X"
    )
    assert len(long_chat) == 3  # 24 turns cut into windows of about WINDOW_MESSAGES
    for dialogue in long_chat:
        assert dialogue.messages[0].role == "user"
        assert len(dialogue.messages) <= WINDOW_MESSAGES
        assert all(m.content != "persona" for m in dialogue.messages)
    assert [m.content for d in long_chat for m in d.messages] == [t["content"] for t in turns]

    lines = parse_chat_file(
        "ft.jsonl",
        _jsonl(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ]
            },
            {
                "messages": [
                    {"role": "human", "content": "a"},
                    {"role": "assistant", "content": "b"},
                ]
            },
        ),
        "X",
    )
    assert [[m.role for m in d.messages] for d in lines] == [["user", "assistant"]] * 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (
            b'{"role": "user", "content": "hi"}\n{"role": "assistant", "content": ',
            "line 2: not valid",
        ),
        (b'["a list"]', "line 1: expected a JSON object"),
        (b'{"role": "narrator", "content": "x"}', "role 'narrator' is not one of"),
        (b'{"role": "user", "content": 42}', "'content' must be text"),
        (b'{"text": "hello"}', "not a chat format Anima reads"),
        (b'{"user_name": "a", "character_name": "b"}\n{"name": "b"}', "line 2: a SillyTavern"),
        (b'{"role": "user", "content": "only the user talks"}', "no replies by the character"),
        (b'{"messages": "nope"}', "'messages' must be a list"),
    ],
)
def test_malformed_chat_files_are_refused_with_file_and_line(content: bytes, expected: str) -> None:
    with pytest.raises(ChatFileError, match=expected) as caught:
        parse_chat_file("bad.jsonl", content, "Brine")
    assert "bad.jsonl" in caught.value.message
    assert caught.value.status == 422


def test_too_few_examples_says_how_many_are_needed_and_from_where() -> None:
    card = CardData(name="Brine", first_mes="Arr!", mes_example=pirate_examples(3))
    with pytest.raises(NotEnoughExamplesError) as caught:
        collect(card, [], FinetuneSettings(), needed=8)
    message = caught.value.message
    assert "at least 8" in message and "has 4" in message and "Add 4 more" in message
    assert "3 example dialogue(s)" in message and "1 greeting(s)" in message

    chat = UploadedChat("more.jsonl", _jsonl(*[{"messages": _pair(i)} for i in range(5)]))
    dialogues, summary = collect(card, [chat], FinetuneSettings(), needed=8)
    assert len(dialogues) == summary.examples == 9
    assert summary.by_source == {"examples": 3, "greetings": 1, "chats": 5}
    assert (summary.train, summary.held_out) == (7, 2)


def _pair(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]


def test_the_held_out_split_is_whole_dialogues_and_the_same_on_every_run() -> None:
    dialogues = [
        Dialogue(source="example", messages=[ChatMessage(role="assistant", content=f"d{i}")])
        for i in range(40)
    ]
    train, held = split(dialogues, 0.15, seed=3)
    again_train, again_held = split(dialogues, 0.15, seed=3)
    assert (train, held) == (again_train, again_held)
    assert len(held) == 6 and len(train) == 34
    assert {d.messages[0].content for d in train}.isdisjoint(d.messages[0].content for d in held)
    assert split(dialogues, 0.15, seed=4)[1] != held


# ----- rendering -------------------------------------------------------------------------------
def test_only_the_characters_replies_carry_a_loss(tokenizer: Any) -> None:
    card = CardData(name="Brine", description="{{char}} is a pirate.", mes_example="")
    dialogue = Dialogue(
        source="example",
        messages=[
            ChatMessage(role="user", content="Where to?"),
            ChatMessage(role="assistant", content="Arr, to the Skull Isles!"),
            ChatMessage(role="user", content="Why?"),
            ChatMessage(role="assistant", content="Gold, matey."),
        ],
    )
    renderer = Renderer(tokenizer, card, FinetuneSettings())
    sample = renderer.render(dialogue)
    assert sample is not None
    text = tokenizer.decode(sample.input_ids)
    assert "Brine is a pirate." in text and "Where to?" in text  # persona + user turn: context
    trained = tokenizer.decode([t for t in sample.labels if t != IGNORE_INDEX])
    assert trained.replace("<|im_end|>", "|").split("|")[:2] == [
        "Arr, to the Skull Isles!",
        "\nGold, matey.",
    ]
    assert "Where to?" not in trained and "pirate." not in trained


def test_a_persona_too_long_for_the_sequence_falls_back_to_the_system_line(
    tokenizer: Any,
) -> None:
    card = CardData(name="Brine", description="Very long backstory. " * 200)
    renderer = Renderer(tokenizer, card, FinetuneSettings(max_seq_len=128))
    assert any("more than half of max_seq_len" in n for n in renderer.notes)
    dialogue = Dialogue(
        source="example",
        messages=[
            ChatMessage(role="user", content="Hi"),
            ChatMessage(role="assistant", content="Arr"),
        ],
    )
    sample = renderer.render(dialogue)
    assert sample is not None and len(sample.input_ids) <= 128 and sample.target_tokens > 0


# ----- style score -----------------------------------------------------------------------------
def test_the_style_score_rewards_the_characters_voice_not_the_topic() -> None:
    creator = [
        "Arr, matey! *taps his wooden leg* The sea be rough today. Yo-ho-ho!",
        "Arr, matey! *squints* Me gold be buried deep. Yo-ho-ho!",
        "Arr! *strokes his beard* Ye be a fine deckhand. Yo-ho-ho!",
    ]
    in_voice = ["Arr, matey! *grins* The weather be fine for sailin'. Yo-ho-ho!"]
    plain = ["The weather is fine for sailing today, and the sea is calm."]
    scorer = StyleScorer(creator, [in_voice, plain])
    assert scorer.score(in_voice) > scorer.score(plain) + 0.2
    assert scorer.score(creator) == pytest.approx(1.0)
    assert scorer.score([]) == 0.0


def test_lora_alpha_is_twice_the_rank_unless_given() -> None:
    """The studio's rank slider and an API request naming only ``lora_r`` train the same."""
    assert FinetuneSettings().lora_alpha == 16
    assert FinetuneSettings(lora_r=4).lora_alpha == 8
    assert FinetuneSettings.model_validate({"lora_r": 32}).lora_alpha == 64
    assert FinetuneSettings(lora_r=4, lora_alpha=3).lora_alpha == 3
