"""Training data for an agent's adapter: dialogues from its card and uploaded chats, tokenised.

Sources, in the creator's own words:

- the card's example dialogues (``mes_example``, ``<START>`` blocks), parsed exactly as the
  prompt builder parses them, so ``{{char}}``/``{{user}}`` lines mean the same thing here;
- the greetings (``first_mes`` and ``alternate_greetings``), each a one-turn dialogue in which
  the character speaks first;
- uploaded chats: SillyTavern chat files (JSONL: a header line with ``user_name`` and
  ``character_name``, then one message per line with ``name``, ``is_user``, ``mes``), and plain
  JSONL, either one ``{"role", "content"}`` message per line (one conversation per file) or one
  ``{"messages": [...]}`` conversation per line (the OpenAI fine-tuning format). Long chats are
  cut into windows of a few exchanges, each a dialogue of its own.

A dialogue is the unit of the held-out split, so no reply the model is evaluated on was seen
in training, not even as context. Each dialogue is rendered with the base model's own chat
template behind a system prompt built by :func:`agents.prompt.build_prompt` (the persona as it
is served, without the example dialogues: those are the training targets, and having them in
context would teach copying). Only the character's replies carry a loss; user turns and the
system prompt are context.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agents.finetune.schema import DataSummary, FinetuneSettings
from agents.prompt import DEFAULT_USER_NAME, build_prompt, char_name, greetings, parse_examples
from agents.schema import CardData, ChatMessage
from core.errors import ChatFileError, NotEnoughExamplesError, ValidationError

# Messages per window when a long uploaded chat is cut into dialogues (about 4 exchanges:
# enough context to learn how the character answers, short enough for small sequence lengths).
WINDOW_MESSAGES = 8
MAX_DIALOGUES = 5000
MAX_MESSAGE_CHARS = 32_000
IGNORE_INDEX = -100
# Held out at least this many dialogues: one would make the perplexity a coin toss.
MIN_HELD_OUT = 2


class Dialogue(BaseModel):
    """One training example: turns by the user and the character, oldest first."""

    source: str  # "example" | "greeting" | "chat:<file name>"
    user: str = DEFAULT_USER_NAME
    messages: list[ChatMessage]


@dataclass
class Sample:
    input_ids: list[int]
    labels: list[int]

    @property
    def target_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class UploadedChat:
    filename: str
    content: bytes


# ----- collecting dialogues ------------------------------------------------------------------
def card_dialogues(card: CardData, options: FinetuneSettings) -> list[Dialogue]:
    """The card's example dialogues and greetings that have a reply by the character."""
    char = char_name(card)
    found: list[Dialogue] = []
    if options.use_examples:
        for turns in parse_examples(card.mes_example, char, DEFAULT_USER_NAME):
            if any(m.role == "assistant" for m in turns):
                found.append(Dialogue(source="example", messages=turns))
    if options.use_greetings:
        for text in greetings(card, DEFAULT_USER_NAME):
            found.append(
                Dialogue(source="greeting", messages=[ChatMessage(role="assistant", content=text)])
            )
    return found


def parse_chat_file(filename: str, content: bytes, char: str) -> list[Dialogue]:
    """Dialogues from an uploaded chat; ``ChatFileError`` (422) names the file and line."""
    name = (filename or "chat.jsonl").replace("\\", "/").rsplit("/", 1)[-1][:100]
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChatFileError(f"{name} is not UTF-8 text (byte {exc.start})") from exc
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ChatFileError(f"{name} line {number}: not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise ChatFileError(f"{name} line {number}: expected a JSON object")
        rows.append((number, obj))
    if not rows:
        raise ChatFileError(f"{name} is empty")
    first = rows[0][1]
    source = f"chat:{name}"
    if "character_name" in first or "user_name" in first or "is_user" in first or "mes" in first:
        conversations = [_sillytavern(name, rows, char)]
        user = str(first.get("user_name") or DEFAULT_USER_NAME)
    elif "messages" in first:
        conversations = [_messages(name, n, obj.get("messages"), char) for n, obj in rows]
        user = DEFAULT_USER_NAME
    elif "role" in first and "content" in first:
        conversations = [[_message(name, n, obj, char) for n, obj in rows]]
        user = DEFAULT_USER_NAME
    else:
        raise ChatFileError(
            f"{name} line {rows[0][0]}: not a chat format Anima reads. Use a SillyTavern chat "
            '(.jsonl exported from SillyTavern), one {"role": ..., "content": ...} message per '
            'line, or one {"messages": [...]} conversation per line'
        )
    dialogues: list[Dialogue] = []
    for conversation in conversations:
        for window in _windows(_tidy(conversation)):
            dialogues.append(Dialogue(source=source, user=user[:100], messages=window))
    if not dialogues:
        raise ChatFileError(f"{name} has no replies by the character ({char}) to learn from")
    return dialogues


def _sillytavern(name: str, rows: list[tuple[int, dict[str, Any]]], char: str) -> list[ChatMessage]:
    header = rows[0][1] if "mes" not in rows[0][1] else {}
    body = rows[1:] if header else rows
    target = str(header.get("character_name") or char)
    messages: list[ChatMessage] = []
    for number, obj in body:
        if "mes" not in obj:
            raise ChatFileError(f"{name} line {number}: a SillyTavern message needs 'mes'")
        text = obj["mes"]
        if not isinstance(text, str):
            raise ChatFileError(f"{name} line {number}: 'mes' must be text")
        if obj.get("is_system"):  # narrator notes and hidden messages are not the character
            continue
        _check_length(name, number, text)
        speaker = str(obj.get("name") or "")
        if obj.get("is_user"):
            messages.append(ChatMessage(role="user", content=text))
        elif speaker in ("", target, char):
            messages.append(ChatMessage(role="assistant", content=text))
        else:  # another character of a group chat: context, like the user's turns
            messages.append(ChatMessage(role="user", content=f"{speaker}: {text}"))
    return messages


def _messages(name: str, number: int, value: Any, char: str) -> list[ChatMessage]:
    if not isinstance(value, list):
        raise ChatFileError(f"{name} line {number}: 'messages' must be a list")
    return [_message(name, number, item, char) for item in value]


_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "system": "system"}


def _message(name: str, number: int, obj: Any, char: str) -> ChatMessage:
    if not isinstance(obj, dict):
        raise ChatFileError(f"{name} line {number}: a message must be a JSON object")
    role, content = obj.get("role"), obj.get("content")
    if role not in _ROLES:
        raise ChatFileError(
            f"{name} line {number}: role {role!r} is not one of user, assistant, system "
            f"(assistant = {char})"
        )
    if not isinstance(content, str):
        raise ChatFileError(f"{name} line {number}: 'content' must be text")
    _check_length(name, number, content)
    return ChatMessage(role=_ROLES[role], content=content)  # type: ignore[arg-type]


def _check_length(name: str, number: int, text: str) -> None:
    if len(text) > MAX_MESSAGE_CHARS:
        raise ChatFileError(
            f"{name} line {number}: a message of {len(text):,} characters; at most "
            f"{MAX_MESSAGE_CHARS:,} are used for training"
        )


def _tidy(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Without system turns and empty ones; consecutive turns of one speaker joined."""
    out: list[ChatMessage] = []
    for message in messages:
        text = message.content.strip()
        if message.role == "system" or not text:
            continue
        if out and out[-1].role == message.role:
            out[-1] = ChatMessage(role=message.role, content=f"{out[-1].content}\n\n{text}")
        else:
            out.append(ChatMessage(role=message.role, content=text))
    return out


def _windows(messages: list[ChatMessage]) -> list[list[ChatMessage]]:
    """Cut a long chat into windows that start on a user turn and hold a reply each."""
    windows: list[list[ChatMessage]] = []
    current: list[ChatMessage] = []
    for message in messages:
        if len(current) >= WINDOW_MESSAGES and message.role == "user":
            windows.append(current)
            current = []
        current.append(message)
    windows.append(current)
    return [w for w in windows if any(m.role == "assistant" for m in w)]


def gather(
    card: CardData, chats: Sequence[UploadedChat], options: FinetuneSettings
) -> list[Dialogue]:
    """Every dialogue of the card (as ``options`` select) and of the uploaded chats."""
    char = char_name(card)
    dialogues = card_dialogues(card, options)
    for chat in chats:
        dialogues.extend(parse_chat_file(chat.filename, chat.content, char))
    if len(dialogues) > MAX_DIALOGUES:
        raise ValidationError(
            f"the data holds {len(dialogues):,} dialogues; one fine-tune takes at most "
            f"{MAX_DIALOGUES:,}: upload fewer chats"
        )
    return dialogues


def collect(
    card: CardData,
    chats: Sequence[UploadedChat],
    options: FinetuneSettings,
    needed: int,
) -> tuple[list[Dialogue], DataSummary]:
    """All dialogues for a run plus their summary; too few is a 422 that says how many."""
    dialogues = gather(card, chats, options)
    summary = summarize(dialogues, options, needed)
    if summary.examples < needed:
        raise NotEnoughExamplesError(not_enough(summary, options))
    return dialogues, summary


def summarize(dialogues: list[Dialogue], options: FinetuneSettings, needed: int) -> DataSummary:
    by_source = {"examples": 0, "greetings": 0, "chats": 0}
    for dialogue in dialogues:
        key = {"example": "examples", "greeting": "greetings"}.get(dialogue.source, "chats")
        by_source[key] += 1
    held = held_out_count(len(dialogues), options.holdout_fraction)
    return DataSummary(
        examples=len(dialogues),
        by_source=by_source,
        replies=sum(1 for d in dialogues for m in d.messages if m.role == "assistant"),
        train=len(dialogues) - held,
        held_out=held,
        min_examples=needed,
    )


def not_enough(summary: DataSummary, options: FinetuneSettings) -> str:
    parts = [
        f"{summary.by_source['examples']} example dialogue(s)"
        + ("" if options.use_examples else " (not used)"),
        f"{summary.by_source['greetings']} greeting(s)"
        + ("" if options.use_greetings else " (not used)"),
        f"{summary.by_source['chats']} from uploaded chats",
    ]
    return (
        f"fine-tuning needs at least {summary.min_examples} dialogues with replies by the "
        f"character; this agent has {summary.examples} ({', '.join(parts)}). Add "
        f"{summary.min_examples - summary.examples} more: <START> blocks in Example dialogues, "
        "alternate greetings, or chats uploaded as SillyTavern .jsonl or JSONL messages"
    )


def held_out_count(total: int, fraction: float) -> int:
    if total < MIN_HELD_OUT + 1:
        return 0
    return min(total - 1, max(MIN_HELD_OUT, round(total * fraction)))


def split(
    dialogues: list[Dialogue], fraction: float, seed: int
) -> tuple[list[Dialogue], list[Dialogue]]:
    """(train, held out): a seeded shuffle of whole dialogues, the same on every re-run."""
    order = list(range(len(dialogues)))
    random.Random(seed).shuffle(order)
    held = set(order[: held_out_count(len(dialogues), fraction)])
    train = [d for i, d in enumerate(dialogues) if i not in held]
    return train, [d for i, d in enumerate(dialogues) if i in held]


# ----- rendering with the model's chat template -------------------------------------------------
class Renderer:
    """Turns dialogues into token ids and labels with one tokenizer and one card."""

    def __init__(self, tokenizer: Any, card: CardData, options: FinetuneSettings) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValidationError(
                "the base model has no chat template (a base, not an instruct model?); "
                "fine-tune an instruct/chat model"
            )
        self.tokenizer = tokenizer
        self.options = options
        self.max_len = options.max_seq_len
        self.notes: list[str] = []
        self.skipped = 0
        persona = _without(card, "mes_example", "post_history_instructions")
        minimal = _without(
            persona, "description", "personality", "scenario", "character_book", "creator_notes"
        )
        self.card = persona if options.context == "persona" else minimal
        if options.context == "persona":
            tokens = self.count(self.system(persona, []))
            if tokens > self.max_len // 2:
                self.card = minimal
                self.notes.append(
                    f"the persona takes {tokens} tokens, more than half of max_seq_len "
                    f"({self.max_len}): examples were trained behind the system line only"
                )

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def system(self, card: CardData, messages: list[ChatMessage], user: str = "User") -> str:
        built = build_prompt(
            card,
            messages,
            user_name=user,
            count_tokens=self.count,
            context_window=10**9,
            max_new_tokens=1,
        )
        return built.messages[0].content

    def conversation(self, dialogue: Dialogue) -> list[dict[str, str]]:
        system = self.system(self.card, dialogue.messages, dialogue.user)
        turns = [{"role": m.role, "content": m.content} for m in dialogue.messages]
        return [{"role": "system", "content": system}, *turns]

    def prompt_ids(self, conversation: list[dict[str, str]]) -> list[int]:
        """Token ids of a conversation plus the generation prompt (for evaluation)."""
        text = self._template(conversation, generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, dialogue: Dialogue) -> Sample | None:
        """The dialogue as one sample; None (and counted) if nothing of it can be trained."""
        messages = dialogue.messages
        starts = [i for i, m in enumerate(messages) if m.role == "user" and i > 0]
        for start in [0, *starts]:  # drop the oldest exchanges until it fits
            part = dialogue.model_copy(update={"messages": messages[start:]})
            try:
                sample = self._encode(self.conversation(part))
            except _TemplateRefused:
                self.skipped += 1
                return None
            if len(sample.input_ids) <= self.max_len:
                return sample if sample.target_tokens else None
        cut = Sample(sample.input_ids[: self.max_len], sample.labels[: self.max_len])
        if not cut.target_tokens:
            self.skipped += 1
            return None
        return cut

    def render_all(self, dialogues: list[Dialogue]) -> list[Sample]:
        samples = [s for d in dialogues if (s := self.render(d)) is not None]
        if self.skipped:
            note = (
                f"{self.skipped} dialogue(s) skipped: the model's chat template refused them "
                "(e.g. a greeting before any user turn) or the persona left no room for a reply"
            )
            if note not in self.notes:
                self.notes.append(note)
        return samples

    def _template(self, conversation: list[dict[str, str]], generation_prompt: bool) -> str:
        try:
            return str(
                self.tokenizer.apply_chat_template(
                    conversation, tokenize=False, add_generation_prompt=generation_prompt
                )
            )
        except Exception as exc:  # jinja TemplateError: "roles must alternate", ...
            raise _TemplateRefused(str(exc)) from exc

    def _encode(self, conversation: list[dict[str, str]]) -> Sample:
        full = self._template(conversation, generation_prompt=False)
        spans: list[tuple[int, int]] = []
        for i, message in enumerate(conversation):
            if message["role"] != "assistant":
                continue
            before = self._template(conversation[:i], generation_prompt=True)
            through = self._template(conversation[: i + 1], generation_prompt=False)
            if not (full.startswith(before) and full.startswith(through)):
                raise ValidationError(
                    "the base model's chat template rewrites earlier turns, so its replies "
                    "cannot be told apart for training; fine-tune another model"
                )
            spans.append((len(before), len(through)))
        encoded = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        labels = [
            token if any(lo <= start < hi for lo, hi in spans) else IGNORE_INDEX
            for token, (start, _end) in zip(ids, encoded["offset_mapping"], strict=True)
        ]
        return Sample(ids, labels)


class _TemplateRefused(Exception):
    pass


def _without(card: CardData, *keys: str) -> CardData:
    empty: dict[str, Any] = {k: None if k == "character_book" else "" for k in keys}
    return card.model_copy(update=empty)


def collate(pad_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, Any]]:
    """Pads a batch to its longest sample (not to max_seq_len: short dialogues stay cheap)."""

    def pad(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(item["input_ids"]) for item in batch)
        ids, labels, mask = [], [], []
        for item in batch:
            gap = width - len(item["input_ids"])
            ids.append(item["input_ids"] + [pad_id] * gap)
            labels.append(item["labels"] + [IGNORE_INDEX] * gap)
            mask.append([1] * len(item["input_ids"]) + [0] * gap)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }

    return pad
