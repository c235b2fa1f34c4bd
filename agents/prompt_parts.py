"""The per-conversation parts of a prompt: persona, author's note, running summary, pins.

Placed where SillyTavern puts them by default, so users coming from it find them where they
expect:

- The persona description closes the story string, after the lorebook's "after character"
  entries (ST's default story string ends with ``{{persona}}``; persona position "In Story
  String").
- The summary follows the story string as ``[Summary: ...]`` (the Summarize extension's
  default template and its default position, "after main prompt / story string").
- The author's note is a system message put into the chat ``depth`` messages from its end
  (depth 0: after the newest message), on turns where the number of user messages is a
  multiple of ``frequency`` (1: every turn, 0: never), as ST's Author's Note does.
- Pinned messages are never trimmed: the history is cut around them, and a pinned message
  older than the kept part stays in the prompt in its place in the order.

``build_prompt`` (``agents.prompt``) takes them as one ``ChatExtras``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

SUMMARY_TEMPLATE = "[Summary: {summary}]"
DEFAULT_NOTE_DEPTH = 4
DEFAULT_NOTE_FREQUENCY = 1


@dataclass(frozen=True)
class AuthorsNote:
    text: str
    depth: int = DEFAULT_NOTE_DEPTH
    frequency: int = DEFAULT_NOTE_FREQUENCY

    def due(self, user_turns: int) -> bool:
        """Whether the note goes into this turn's prompt (ST's interval rule)."""
        if not self.text.strip() or self.frequency <= 0:
            return False
        if self.frequency == 1:  # every turn, a fresh chat included
            return True
        return user_turns >= self.frequency and user_turns % self.frequency == 0


@dataclass(frozen=True)
class ChatExtras:
    """What a conversation adds to the card's prompt. ``pinned``: indices into the history
    passed to ``build_prompt`` of the messages that must stay whatever the budget."""

    persona: str = ""
    summary: str = ""
    authors_note: AuthorsNote | None = None
    user_turns: int = 0
    pinned: Collection[int] = field(default_factory=frozenset)

    def note_text(self) -> str:
        """The author's note for this turn, or ``""`` when it is not due."""
        note = self.authors_note
        return note.text.strip() if note is not None and note.due(self.user_turns) else ""


def summary_block(summary: str) -> str:
    return SUMMARY_TEMPLATE.format(summary=summary.strip()) if summary.strip() else ""


def insert_note(messages: list[BaseMessage], note: str, depth: int) -> list[BaseMessage]:
    """``messages`` with the note as a system message ``depth`` messages from the end."""
    if not note:
        return messages
    at = max(0, len(messages) - max(0, depth))
    return [*messages[:at], SystemMessage(content=note), *messages[at:]]


def fit_with_pins(
    history: list[BaseMessage],
    pinned: Collection[int],
    budget: int,
    list_cost: Callable[[list[BaseMessage]], int],
    fit: Callable[[list[BaseMessage], int], tuple[list[BaseMessage], bool]],
) -> tuple[list[BaseMessage], bool]:
    """``fit`` (the plain suffix trimmer) over the unpinned messages, with every pinned one
    kept in its place. The pins' cost comes off the budget first."""
    users = [i for i, m in enumerate(history) if isinstance(m, HumanMessage)]
    tail = users[-1] if users else len(history)  # the newest turn on is kept anyway
    pins = sorted(i for i in set(pinned) if 0 <= i < tail)
    if not pins:
        return fit(history, budget)
    held = {i: history[i] for i in pins}
    loose = [i for i in range(len(history)) if i not in held]
    kept, truncated = fit([history[i] for i in loose], budget - list_cost(list(held.values())))
    # ``fit`` keeps a suffix of the loose messages: put the pins back among them, in order.
    suffix = loose[len(loose) - len(kept) :]
    chosen = {**held, **dict(zip(suffix, kept, strict=True))}
    return [chosen[i] for i in sorted(chosen)], truncated
