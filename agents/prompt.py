"""Turn a character card and a chat history into the messages a chat model sees.

The layout follows SillyTavern's default story order, so cards written for it read the
way their authors meant:

1. One system message: the card's ``system_prompt`` (``{{original}}`` stands for
   ``DEFAULT_SYSTEM_PROMPT``; an empty one means the default), lorebook entries placed
   ``before_char``, the ``description``, ``"{{char}}'s personality: ..."``,
   ``"Scenario: ..."``, entries placed ``after_char``, then ``extra_system`` (system text
   from the caller, e.g. an OpenAI client's own system messages, passed through without
   macro expansion), then retrieved knowledge (numbered excerpts under ``KNOWLEDGE_HEADER``,
   see ``build_prompt``), then the example dialogues (``mes_example``) as text blocks headed
   ``[Example chat]``. Examples live inside the system text rather than as fake
   user/assistant turns so that strict chat templates (which demand alternating roles)
   stay valid and the model cannot mistake them for the real conversation.
2. The chat history, oldest first. The greeting is simply the first assistant message
   of the history; the caller puts it there (``greetings`` gives the candidates).
3. ``post_history_instructions`` as a final system message, when the card has one.

A conversation adds its own parts (``ChatExtras``, see ``agents.prompt_parts``): the persona
description closes the story string (after the ``after_char`` entries), the running summary
follows it, the author's note goes into the history at its depth, and pinned messages are
never trimmed.

Token budget: the whole prompt plus ``max_new_tokens`` must fit ``context_window``. The
system text (without examples), the post-history message and the newest user turn are
fixed; the history is filled from the newest turn backwards with what remains (via
``langchain_core.messages.trim_messages``, so the kept history is always a contiguous
suffix of the input); once turns have been dropped, a leading assistant turn is dropped
too so that the kept history starts on a user turn. Example dialogues take what is left
after the history, block by block, stopping at the first that does not fit: like ST's
"gradual push-out", examples go before any chat turn does. If the newest user turn alone
does not fit, it is cut from its start (its end, the part the model answers, is kept) and
``PromptBuild.truncated_last_turn`` says so.

Counting: a message costs ``count_tokens(content) + MESSAGE_OVERHEAD_TOKENS`` and the
whole prompt ``PROMPT_OVERHEAD_TOKENS`` more. The overheads are measured on ChatML
(SmolLM2, Qwen): ``<|im_start|>role\\n`` + ``<|im_end|>\\n`` is 5 tokens, 6 when the role
name takes two tokens (SmolLM2 splits "assistant" into "ass" + "istant"); the generation
prompt ``<|im_start|>assistant\\n`` is 4, plus 1 for a BOS token some templates add. Llama
3's header tokens fit the same numbers. A template that spends more per message (or
injects text of its own) can overrun by that difference; keep a little headroom in
``context_window`` for such models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    trim_messages,
)

from agents.lorebook import LoreHit, activate, split_by_position
from agents.prompt_parts import ChatExtras, fit_with_pins, insert_note, summary_block
from agents.schema import CardData, ChatMessage
from core.errors import ValidationError

DEFAULT_SYSTEM_PROMPT = (
    "Write {{char}}'s next reply in a fictional chat between {{char}} and {{user}}."
)
MESSAGE_OVERHEAD_TOKENS = 6
PROMPT_OVERHEAD_TOKENS = 5
EXAMPLE_HEADER = "[Example chat]"
KNOWLEDGE_HEADER = (
    "[Knowledge] Excerpts from {{char}}'s documents, numbered. When the reply uses one, "
    "cite its number in brackets, like [1]."
)
DEFAULT_USER_NAME = "User"

_MACRO = re.compile(
    r"\{\{\s*(char|user|original)\s*\}\}|<(BOT|CHAR|USER)>",
    re.IGNORECASE,
)
_START = re.compile(r"<START>", re.IGNORECASE)


def render_macros(text: str, char: str, user: str, original: str = "") -> str:
    """Expand ``{{char}}``, ``{{user}}`` and ``{{original}}`` (any case) in card text.

    The legacy TavernAI forms ``<BOT>``/``<CHAR>`` and ``<USER>`` are expanded too. One
    pass over the text, so a name that itself contains ``{{user}}`` is not expanded again;
    ``original`` is rendered with the same names before it is substituted. Unknown macros
    are left as written.
    """

    def replace(match: re.Match[str]) -> str:
        name = (match.group(1) or match.group(2)).lower()
        if name in ("char", "bot"):
            return char
        if name == "user":
            return user
        return render_macros(original, char, user) if original else ""

    return _MACRO.sub(replace, text)


def parse_examples(mes_example: str, char: str, user: str) -> list[list[ChatMessage]]:
    """Split a card's ``mes_example`` into dialogues of user/assistant turns.

    Blocks are separated by ``<START>``. After macro expansion, a line starting with
    ``"<user>:"`` opens a user turn and ``"<char>:"`` an assistant turn; other lines
    continue the current turn (joined with newlines). Text before the first speaker label
    is narration and belongs to the character. Empty turns and blocks are dropped.
    """
    text = render_macros(mes_example.replace("\r\n", "\n"), char, user)
    # The longer label first, in case one name is a prefix of the other ("Ann", "Anna").
    labels = sorted(
        [(f"{user}:", "user"), (f"{char}:", "assistant")],
        key=lambda label: len(label[0]),
        reverse=True,
    )
    dialogues: list[list[ChatMessage]] = []
    for block in _START.split(text):
        turns: list[tuple[str, list[str]]] = []
        for line in block.split("\n"):
            for label, role in labels:
                if line.startswith(label):
                    turns.append((role, [line[len(label) :].strip()]))
                    break
            else:
                if turns:
                    turns[-1][1].append(line)
                elif line.strip():
                    turns.append(("assistant", [line]))
        dialogue = [
            ChatMessage(role=role, content=content)  # type: ignore[arg-type]
            for role, lines in turns
            if (content := "\n".join(lines).strip())
        ]
        if dialogue:
            dialogues.append(dialogue)
    return dialogues


def char_name(card: CardData) -> str:
    """What ``{{char}}`` becomes: the V3 ``nickname`` when set, else the card's name."""
    return (card.nickname or "").strip() or card.name


def greetings(card: CardData, user_name: str = DEFAULT_USER_NAME) -> list[str]:
    """The card's possible first messages: ``first_mes`` then ``alternate_greetings``.

    Rendered for ``user_name``; empty ones are left out, so index 0 is the default greeting
    whenever the card has any.
    """
    found = [card.first_mes, *card.alternate_greetings]
    rendered = (render_macros(g, char_name(card), user_name or DEFAULT_USER_NAME) for g in found)
    return [g.strip() for g in rendered if g.strip()]


@dataclass
class PromptTrace:
    """What ``build_prompt`` decided, part by part, for the prompt inspector
    (``agents.prompt_preview``): filled by the builder itself, so the inspector shows the
    decisions a reply makes rather than a second guess at them.

    ``system_parts``: the system message's pieces as (kind, text), in order; joined with blank
    lines they are exactly its content. Kinds: ``system``, ``lore`` (one per entry, in the
    order of ``lore_hits`` by position), ``description``, ``personality``, ``scenario``,
    ``persona``, ``summary``, ``extra_system``, ``knowledge`` (header and excerpts),
    ``example`` (one per example dialogue). ``history_sources``: for each message after the
    system one, the index in the ``history`` given to ``build_prompt`` it came from, or None
    for the author's note and the post-history instructions. ``examples_left_out``: the
    example dialogues that did not fit.
    """

    system_parts: list[tuple[str, str]] = field(default_factory=list)
    history_sources: list[int | None] = field(default_factory=list)
    note: str = ""
    post: str = ""
    examples_left_out: list[str] = field(default_factory=list)


@dataclass
class PromptBuild:
    """The assembled prompt and what had to give way to fit the context window."""

    messages: list[ChatMessage]
    lore_hits: list[LoreHit] = field(default_factory=list)
    dropped_history: int = 0
    prompt_tokens: int = 0
    examples_used: int = 0
    examples_total: int = 0
    truncated_last_turn: bool = False
    knowledge_used: int = 0  # leading entries of ``knowledge`` that fit in the prompt
    trace: PromptTrace = field(default_factory=PromptTrace)


def to_langchain(messages: Sequence[ChatMessage]) -> list[BaseMessage]:
    """Our messages as langchain-core messages (system/human/ai)."""
    kinds: dict[str, type[BaseMessage]] = {
        "system": SystemMessage,
        "user": HumanMessage,
        "assistant": AIMessage,
    }
    return [kinds[m.role](content=m.content) for m in messages]


def from_langchain(messages: Sequence[BaseMessage]) -> list[ChatMessage]:
    """Back from langchain-core messages; any other message type is an error."""
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    out: list[ChatMessage] = []
    for m in messages:
        if m.type not in roles:
            raise ValidationError(f"Unsupported message type in a chat: {m.type!r}.")
        out.append(ChatMessage(role=roles[m.type], content=m.text))  # type: ignore[arg-type]
    return out


def _cut_front(
    message: BaseMessage, budget: int, list_cost: Callable[[list[BaseMessage]], int]
) -> BaseMessage:
    """``message`` with whole words cut from its start until it costs at most ``budget``.

    Done here rather than with ``trim_messages(allow_partial=True)``, which prices the
    kept words joined in reverse order and so can overshoot the budget.
    """
    pieces = [p for p in re.split(r"(?<=\s)(?=\S)", message.text) if p]

    def cut(start: int) -> BaseMessage:
        return message.model_copy(update={"content": "".join(pieces[start:])})

    low, high = 0, len(pieces)  # smallest start whose remainder fits, searched in [low, high]
    while low < high:
        mid = (low + high) // 2
        if list_cost([cut(mid)]) <= budget:
            high = mid
        else:
            low = mid + 1
    kept = cut(low)
    if not kept.text.strip() or list_cost([kept]) > budget:
        raise ValidationError(
            "The newest message does not fit in the context window next to the "
            "character's description; shorten the card or lower the reply length."
        )
    return kept


def _system_parts(
    card: CardData,
    char: str,
    user: str,
    lore: dict[str, list[LoreHit]],
    extra_system: str | None,
    extras: ChatExtras,
) -> list[tuple[str, str]]:
    """The system text's pieces as (kind, text), empty ones left out (see ``PromptTrace``)."""

    def render(text: str) -> str:
        return render_macros(text, char, user).strip()

    system = card.system_prompt.strip() or DEFAULT_SYSTEM_PROMPT
    parts = [("system", render_macros(system, char, user, original=DEFAULT_SYSTEM_PROMPT).strip())]
    parts += [("lore", hit.content) for hit in lore["before_char"]]
    parts.append(("description", render(card.description)))
    if personality := render(card.personality):
        parts.append(("personality", f"{char}'s personality: {personality}"))
    if scenario := render(card.scenario):
        parts.append(("scenario", f"Scenario: {scenario}"))
    parts += [("lore", hit.content) for hit in lore["after_char"]]
    parts.append(("persona", render(extras.persona)))
    parts.append(("summary", summary_block(extras.summary)))
    if extra_system:
        parts.append(("extra_system", extra_system.strip()))
    return [(kind, text) for kind, text in parts if text]


def _joined(parts: Sequence[tuple[str, str]]) -> str:
    return "\n\n".join(text for _, text in parts)


def _format_example(dialogue: list[ChatMessage], char: str, user: str) -> str:
    lines = [EXAMPLE_HEADER]
    lines += [f"{user if m.role == 'user' else char}: {m.content}" for m in dialogue]
    return "\n".join(lines)


def build_prompt(
    card: CardData,
    history: Sequence[ChatMessage],
    *,
    user_name: str,
    count_tokens: Callable[[str], int],
    context_window: int,
    max_new_tokens: int,
    extra_system: str | None = None,
    knowledge: Sequence[str] = (),
    extras: ChatExtras | None = None,
) -> PromptBuild:
    """Assemble the prompt for the character's next reply (see the module docstring).

    ``knowledge``: numbered excerpts retrieved for this reply ("[1] (file, page 3) text"),
    best first. They join the system text after ``extra_system`` under ``KNOWLEDGE_HEADER``,
    as many as fit in half of what the history could use; ``knowledge_used`` says how many.

    ``history`` is the chat so far, oldest first, usually ending with the user's newest
    turn. ``extras``: the conversation's persona, summary, author's note and pins.
    Raises ``ValidationError`` when the window cannot hold even the card's fixed
    text, the newest turn's last words and the reply.
    """
    available = _prompt_room(context_window, max_new_tokens)
    char, user = char_name(card), user_name or DEFAULT_USER_NAME

    count, cost, list_cost = _token_costs(count_tokens)
    extras = extras or ChatExtras()
    hits, parts, post = _card_text(card, history, char, user, count, extra_system, extras)
    system_text = _joined(parts)
    note = render_macros(extras.note_text(), char, user).strip()
    fixed = _fixed_cost(system_text, post, cost, context_window, available)
    history_budget = available - fixed - (cost(note) if note else 0)

    card_only = system_text
    system_text, knowledge_used, history_budget = _with_knowledge(
        system_text, post, knowledge, (char, user), history_budget, fixed, cost
    )
    if knowledge_used:
        parts.append(("knowledge", system_text[len(card_only) + 2 :]))

    kept, truncated, sources = _fit_chat(history, extras, note, history_budget, list_cost)
    remaining = history_budget - list_cost(kept) + (cost(note) if note else 0)
    dropped = len(history) - len(kept) + (1 if note else 0)

    dialogues = parse_examples(card.mes_example, char, user)
    examples = _fit_examples(system_text, dialogues, char, user, remaining, cost)
    if examples:
        system_text = "\n\n".join([system_text, *examples])
    parts += [("example", block) for block in examples]

    messages = _assembled(system_text, kept, post)
    trace = PromptTrace(
        system_parts=parts,
        history_sources=sources + ([None] if post else []),
        note=note,
        post=post,
        examples_left_out=[_format_example(d, char, user) for d in dialogues[len(examples) :]],
    )
    return PromptBuild(
        messages=messages,
        lore_hits=hits,
        dropped_history=dropped,
        prompt_tokens=sum(cost(m.content) for m in messages) + PROMPT_OVERHEAD_TOKENS,
        examples_used=len(examples),
        examples_total=len(dialogues),
        truncated_last_turn=truncated,
        knowledge_used=knowledge_used,
        trace=trace,
    )


def _token_costs(
    count_tokens: Callable[[str], int],
) -> tuple[Callable[[str], int], Callable[[str], int], Callable[[list[BaseMessage]], int]]:
    """Token counts, cached (a prompt is measured many times while it is fitted): of a text,
    of a text as one message, and of a list of messages."""
    count = lru_cache(maxsize=4096)(count_tokens)

    def cost(text: str) -> int:
        return count(text) + MESSAGE_OVERHEAD_TOKENS

    def list_cost(messages: list[BaseMessage]) -> int:
        return sum(cost(m.text) for m in messages)

    return count, cost, list_cost


def _with_knowledge(
    system_text: str,
    post: str,
    knowledge: Sequence[str],
    names: tuple[str, str],
    history_budget: int,
    fixed: int,
    cost: Callable[[str], int],
) -> tuple[str, int, int]:
    """The system text with the excerpts that fit in half of the history's room, how many
    joined it, and the room left for the history (``names``: the character's and user's)."""
    if not knowledge:
        return system_text, 0, history_budget
    header = render_macros(KNOWLEDGE_HEADER, *names)
    system_text, used = _add_knowledge(system_text, header, knowledge, history_budget // 2, cost)
    history_budget -= cost(system_text) + (cost(post) if post else 0) - fixed
    return system_text, used, history_budget


def _assembled(system_text: str, kept: list[BaseMessage], post: str) -> list[ChatMessage]:
    """The system text, the history that fits, then the post-history text (when any)."""
    messages = [ChatMessage(role="system", content=system_text), *from_langchain(kept)]
    if post:
        messages.append(ChatMessage(role="system", content=post))
    return messages


def _card_text(
    card: CardData,
    history: Sequence[ChatMessage],
    char: str,
    user: str,
    count: Callable[[str], int],
    extra_system: str | None,
    extras: ChatExtras,
) -> tuple[list[LoreHit], list[tuple[str, str]], str]:
    """The lorebook entries the chat fires, the system text's parts and the post-history
    text."""
    hits = activate(
        card.character_book,
        [m.content for m in history],
        count,
        render=lambda text: render_macros(text, char, user),
    )
    lore = split_by_position(hits)
    parts = _system_parts(card, char, user, lore, extra_system, extras)
    post = render_macros(card.post_history_instructions, char, user).strip()
    return hits, parts, post


def _fit_chat(
    history: Sequence[ChatMessage],
    extras: ChatExtras,
    note: str,
    budget: int,
    list_cost: Callable[[list[BaseMessage]], int],
) -> tuple[list[BaseMessage], bool, list[int | None]]:
    """The history that fits ``budget`` (pinned messages always kept), with the author's
    note put in at its depth; True if the newest turn had to be cut; and where each kept
    message came from in ``history`` (None: the note, or a turn that was cut)."""
    messages = to_langchain(history)
    kept, truncated = fit_with_pins(
        messages,
        extras.pinned,
        budget,
        list_cost,
        lambda messages, room: _fit_history(messages, room, list_cost),
    )
    index = {id(m): i for i, m in enumerate(messages)}
    sources: list[int | None] = [index.get(id(m)) for m in kept]
    if truncated and sources:  # the cut newest turn is a copy: it is still the newest user turn
        cut = next((i for i, m in enumerate(kept) if id(m) not in index), None)
        users = [i for i, m in enumerate(history) if m.role == "user"]
        if cut is not None and users:
            sources[cut] = users[-1]
    depth = extras.authors_note.depth if extras.authors_note else 0
    if note:
        sources.insert(max(0, len(kept) - max(0, depth)), None)
    return insert_note(kept, note, depth), truncated, sources


def _fixed_cost(
    system_text: str, post: str, cost: Callable[[str], int], context_window: int, available: int
) -> int:
    """Tokens of what every prompt carries whole (system text, post-history instructions)."""
    fixed = cost(system_text) + (cost(post) if post else 0)
    if fixed > available:
        raise ValidationError(
            f"The character's description, lore and instructions take {fixed} tokens, more "
            f"than a {context_window}-token context window allows with "
            f"{context_window - available - PROMPT_OVERHEAD_TOKENS}-token replies; shorten the "
            "card or lower the reply length."
        )
    return fixed


def _prompt_room(context_window: int, max_new_tokens: int) -> int:
    """Tokens the prompt may take once the reply and the chat template's overhead are set aside."""
    if context_window <= 0 or max_new_tokens <= 0:
        raise ValidationError("The context window and the reply length must be positive.")
    available = context_window - max_new_tokens - PROMPT_OVERHEAD_TOKENS
    if available <= 0:
        raise ValidationError(
            f"A reply of {max_new_tokens} tokens leaves no room for the prompt in a "
            f"{context_window}-token context window; lower the reply length."
        )
    return available


def _fit_examples(
    system_text: str,
    dialogues: list[list[ChatMessage]],
    char: str,
    user: str,
    remaining: int,
    cost: Callable[[str], int],
) -> list[str]:
    """The example dialogues, in order, as many as fit in ``remaining`` tokens."""
    examples: list[str] = []
    for dialogue in dialogues:
        block = _format_example(dialogue, char, user)
        # Price the whole system text: BPE merges make costs of joined text non-additive.
        if cost("\n\n".join([system_text, *examples, block])) - cost(system_text) > remaining:
            break
        examples.append(block)
    return examples


def _add_knowledge(
    system_text: str,
    header: str,
    blocks: Sequence[str],
    budget: int,
    cost: Callable[[str], int],
) -> tuple[str, int]:
    """``system_text`` with the header and the leading ``blocks`` that fit in ``budget``."""
    used: list[str] = []
    for block in blocks:
        text = "\n\n".join([system_text, "\n".join([header, *used, block])])
        if cost(text) - cost(system_text) > budget:
            break
        used.append(block)
    if not used:
        return system_text, 0
    return "\n\n".join([system_text, "\n".join([header, *used])]), len(used)


def _fit_history(
    history: list[BaseMessage],
    budget: int,
    list_cost: Callable[[list[BaseMessage]], int],
) -> tuple[list[BaseMessage], bool]:
    """The longest suffix of ``history`` within ``budget``; True if the newest turn was cut.

    The suffix from the newest user turn on is always kept (cut from its start if it alone
    is too long). When older turns are dropped, the kept part starts on a user turn.
    """
    if not history or list_cost(history) <= budget:
        return history, False
    users = [i for i, m in enumerate(history) if isinstance(m, HumanMessage)]
    pinned = history[users[-1] if users else len(history) - 1 :]
    if list_cost(pinned) > budget:
        return [_cut_front(pinned[0], budget - list_cost(pinned[1:]), list_cost), *pinned[1:]], True
    kept = trim_messages(
        history,
        max_tokens=budget,
        token_counter=list_cost,
        strategy="last",
        start_on="human" if users else None,  # with no user turn it would drop everything
    )
    return kept, False
