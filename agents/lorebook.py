"""Which lorebook entries of a card enter the prompt (SillyTavern "World Info" semantics).

A card's ``character_book`` holds facts the model should only see when they matter: an
entry is inserted when one of its keys appears in the recent chat. Cards are written for
SillyTavern, so we follow its rules closely; a card that works there should pick the same
entries here.

Rules, in the order they apply:

* **Candidates.** ``enabled: false`` entries never activate; entries with empty content
  are ignored (they would insert nothing).
* **Scan text.** The last ``scan_depth`` chat messages (the book's ``scan_depth``, else
  ``default_scan_depth``; ST's per-entry ``extensions.scan_depth`` overrides both), joined
  with newlines. A depth of 0 scans no chat at all: only constant entries (and what they
  trigger by recursion) can activate.
* **Constant.** ``constant: true`` entries are always active.
* **Keys.** An entry activates when any of its ``keys`` matches the scan text. Blank keys
  are ignored, so an entry with no usable key can only be constant.

  - Plain keys are substrings, compared case-insensitively unless ``case_sensitive`` is
    true (``extensions.case_sensitive`` is read when the field is absent).
  - ST's ``extensions.match_whole_words: true`` makes a single-word key match only as a
    whole word (``(?:^|\\W)key(?:$|\\W)`` as ST does); keys with spaces stay substrings,
    also as in ST.
  - A key written ``/pattern/flags`` is a regular expression (flags ``i``, ``m``, ``s``;
    ``g``/``u``/``y`` are accepted and ignored). Its own flags decide case, as in ST. With
    the V3 field ``use_regex: true`` every key is a pattern, with or without slashes, and
    case follows ``case_sensitive``. Patterns come from strangers' cards and run on every
    reply, so they run on RE2 (``google-re2``), whose time is linear in the text: a
    pattern like ``(a+)+$`` that would stall Python's backtracking ``re`` for minutes
    (holding the GIL, so the whole server) costs microseconds. RE2 has no backreferences or
    lookaround; a key that needs them is refused when the card is saved
    (:func:`check_regex_keys`, a 422 naming the entry and key). A pattern that compiles
    nowhere falls back to a plain substring key, as ST does with an invalid regex.
* **Secondary keys.** ``selective: true`` with non-empty ``secondary_keys``: a primary key
  must match and then ST's ``extensions.selectiveLogic`` decides: 0 AND_ANY (default, any
  secondary matches), 1 NOT_ALL (not all secondaries match), 2 NOT_ANY (none matches),
  3 AND_ALL (all match). ``selective`` with no secondary keys, or secondary keys without
  ``selective``, behave as a plain entry.
* **Recursion.** With the book's ``recursive_scanning: true`` the content of entries
  activated in one pass is appended to the scan text of the next pass, so that one entry
  can pull in another (at most ``MAX_SCAN_PASSES`` passes). ST's per-entry extensions:
  ``prevent_recursion`` (this entry's content triggers nothing) and ``exclude_recursion``
  (this entry cannot be triggered by another entry's content, only by the chat).
* **Budget.** The content of all activated entries together may cost at most the book's
  ``token_budget`` tokens (else ``default_token_budget``; a missing or non-positive value
  means the default). Within a pass, entries are admitted constants first, then by
  ``insertion_order`` descending (a higher order wins the budget), then ``priority``
  descending, then book order. The first entry that does not fit stops the scan, as ST
  stops at the first overflow: it and everything after it is dropped, and no further
  recursion pass runs.
* **Output.** Activated entries in ascending ``insertion_order`` (ties keep book order):
  a lower order is inserted earlier, i.e. higher in the prompt. Each hit carries its
  ``position``: ``before_char`` (default) or ``after_char``, read from the card field, else
  from ST's ``extensions.position`` (0 before, 1 after). ST's other positions (author's
  note, at-depth) have no slot in our prompt and fall back to ``before_char``.

Not supported (ST features outside the card spec): probability rolls, sticky/cooldown/delay
timers, inclusion groups, and ``delay_until_recursion``. Those keys survive card export
untouched; they just do not change activation here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import re2

from agents.schema import Card, CharacterBook, LorebookEntry
from core.errors import ValidationError

Position = Literal["before_char", "after_char"]

MAX_SCAN_PASSES = 5
"""The first scan plus up to four recursive ones: enough for chains of lore, bounded for loops."""

AND_ANY, NOT_ALL, NOT_ANY, AND_ALL = 0, 1, 2, 3

# ST's parseRegexFromString: "/body/flags", body non-empty, flags from the JS set.
_REGEX_KEY = re.compile(r"^/([\s\S]+?)/([gimsuy]*)$")
_JS_FLAGS = {"i", "m", "s"}  # g, u, y change nothing for a yes/no search
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the user, not to stderr


@dataclass(frozen=True)
class LoreHit:
    """One activated entry, ready to insert: ``content`` is already macro-rendered."""

    entry: LorebookEntry
    content: str
    position: Position
    tokens: int


Matcher = Callable[[str], bool]


class LoreSource(Protocol):
    """Where a reply finds the standalone books attached to its agent (``agents.lorebooks``)."""

    def books_for(self, agent_id: str) -> list[CharacterBook]: ...


def with_books(card: Card, books: Sequence[CharacterBook]) -> Card:
    """``card`` whose book also holds the entries of ``books``, for one reply's prompt.

    As SillyTavern's default ("sorted evenly"), all entries compete as one book: the card's
    scan depth, budget and recursion apply (a card without a book takes the first attached
    book's), and insertion order decides placement whatever book an entry came from. The
    stored card is not changed.
    """
    if not books:
        return card
    base = card.data.character_book or books[0]
    entries = [*(card.data.character_book.entries if card.data.character_book else [])]
    for book in books:
        entries += book.entries
    merged = base.model_copy(update={"entries": entries})
    return card.model_copy(update={"data": card.data.model_copy(update={"character_book": merged})})


def _pattern_of(key: str, *, case_sensitive: bool, use_regex: bool) -> str | None:
    """The RE2 pattern (inline flags included) a key stands for, or None for a plain key."""
    slash = _REGEX_KEY.match(key)
    if slash:
        flags = "".join(sorted({f for f in slash.group(2) if f in _JS_FLAGS}))
        return f"(?{flags}){slash.group(1)}" if flags else slash.group(1)
    if use_regex:
        return key if case_sensitive else f"(?i){key}"
    return None


def _re2(pattern: str) -> Any:
    """The compiled RE2 pattern, or None if RE2 cannot run it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        return None


def _compile_key(key: str, *, case_sensitive: bool, whole_words: bool, use_regex: bool) -> Matcher:
    """Turn one key into a predicate on the scan text, following ST's matchKeys."""
    pattern = _pattern_of(key, case_sensitive=case_sensitive, use_regex=use_regex)
    if pattern is not None:
        compiled = _re2(pattern)
        if compiled is not None:
            return lambda text: compiled.search(text) is not None
        # ST treats an invalid regex as a plain key; a backtracking-only pattern stored
        # before it was refused at save time degrades the same way, never to Python's ``re``.
    flags = 0 if case_sensitive else re.IGNORECASE
    if whole_words and len(key.split()) == 1:
        regex = re.compile(r"(?:^|\W)" + re.escape(key) + r"(?:$|\W)", flags)
    else:
        regex = re.compile(re.escape(key), flags)
    return lambda text: regex.search(text) is not None


@dataclass
class _Candidate:
    index: int
    entry: LorebookEntry
    content: str
    primary: list[Matcher]
    secondary: list[Matcher]
    logic: int
    scan_depth: int
    position: Position

    @property
    def constant(self) -> bool:
        return bool(self.entry.constant)

    @property
    def prevent_recursion(self) -> bool:
        return bool(self.entry.extensions.get("prevent_recursion"))

    @property
    def exclude_recursion(self) -> bool:
        return bool(self.entry.extensions.get("exclude_recursion"))

    def matches(self, text: str) -> bool:
        if not any(m(text) for m in self.primary):
            return False
        if not self.secondary:
            return True
        hits = [m(text) for m in self.secondary]
        if self.logic == NOT_ALL:
            return not all(hits)
        if self.logic == NOT_ANY:
            return not any(hits)
        if self.logic == AND_ALL:
            return all(hits)
        return any(hits)  # AND_ANY, and ST's fallback for unknown values

    def budget_rank(self) -> tuple[int, int, int, int]:
        """Sort key: lower sorts first, i.e. claims the budget first."""
        return (
            0 if self.constant else 1,
            -self.entry.insertion_order,
            -(self.entry.priority or 0),
            self.index,
        )


def _int_or(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _position(entry: LorebookEntry) -> Position:
    if entry.position in ("before_char", "after_char"):
        return entry.position  # type: ignore[return-value]
    return "after_char" if entry.extensions.get("position") == 1 else "before_char"


def _candidate(
    index: int, entry: LorebookEntry, scan_depth: int, render: Callable[[str], str]
) -> _Candidate | None:
    content = render(entry.content).strip()
    if not entry.enabled or not content:
        return None
    ext = entry.extensions
    case_sensitive = (
        entry.case_sensitive
        if entry.case_sensitive is not None
        else bool(ext.get("case_sensitive"))
    )
    options = {
        "case_sensitive": case_sensitive,
        "whole_words": bool(ext.get("match_whole_words")),
        "use_regex": bool(entry.use_regex),
    }

    def matchers(keys: Sequence[str] | None) -> list[Matcher]:
        rendered = (render(k) for k in keys or [])
        return [_compile_key(k, **options) for k in rendered if k.strip()]

    primary = matchers(entry.keys)
    if not primary and not entry.constant:
        return None
    return _Candidate(
        index=index,
        entry=entry,
        content=content,
        primary=primary,
        secondary=matchers(entry.secondary_keys) if entry.selective else [],
        logic=_int_or(ext.get("selectiveLogic"), AND_ANY),
        scan_depth=max(0, _int_or(ext.get("scan_depth"), scan_depth)),
        position=_position(entry),
    )


def check_regex_keys(
    book: CharacterBook | None, render: Callable[[str], str] | None = None
) -> None:
    """Refuse a book whose pattern keys need a backtracking engine (backreferences, lookaround).

    Called when a card is imported, created or changed, so the author learns at once which key
    to rewrite rather than finding it silently ignored. Patterns RE2 runs are fine whatever
    they look like (``(a+)+$`` included: linear time); patterns nothing compiles stay plain
    keys, as in SillyTavern.
    """
    if book is None:
        return
    render_fn = render or (lambda text: text)
    for number, entry in enumerate(book.entries, start=1):
        ext = entry.extensions
        case_sensitive = (
            entry.case_sensitive
            if entry.case_sensitive is not None
            else bool(ext.get("case_sensitive"))
        )
        for key in [*(entry.keys or []), *(entry.secondary_keys or [])]:
            if not isinstance(key, str) or not key.strip():
                continue
            pattern = _pattern_of(
                render_fn(key), case_sensitive=case_sensitive, use_regex=bool(entry.use_regex)
            )
            if pattern is None or _re2(pattern) is not None:
                continue
            try:
                re.compile(pattern)
            except re.error:
                continue  # invalid everywhere: a plain key, as in SillyTavern
            except RecursionError:
                pass
            label = f" ({entry.name or entry.comment})" if (entry.name or entry.comment) else ""
            raise ValidationError(
                f"lorebook entry {number}{label}: key {key[:80]!r} needs backreferences, "
                "lookaround or a huge repetition, which can stall every reply. Anima runs "
                "lorebook patterns on RE2 (linear time); rewrite the key without them"
            )


def scan_depth_needed(book: CharacterBook | None, default_scan_depth: int = 4) -> int:
    """How many of the newest messages :func:`activate` may read for ``book``.

    The chat engine loads only as much history as fits the context window, but never fewer
    messages than the lorebook scans, so that trimming history never changes which entries
    activate.
    """
    if book is None or not book.entries:
        return 0
    depth = book.scan_depth if book.scan_depth is not None else default_scan_depth
    deepest = max((_int_or(e.extensions.get("scan_depth"), 0) for e in book.entries), default=0)
    return max(0, depth, deepest)


def activate(
    book: CharacterBook | None,
    history: Sequence[str],
    count_tokens: Callable[[str], int],
    *,
    default_scan_depth: int = 4,
    default_token_budget: int = 512,
    render: Callable[[str], str] | None = None,
) -> list[LoreHit]:
    """The entries of ``book`` that the chat ``history`` (oldest first) activates.

    ``render`` expands macros (``{{char}}``, ``{{user}}``) in keys and content before
    matching and counting, as ST does; ``count_tokens`` prices the content against the
    book's budget. Returns hits in insertion order (see the module docstring).
    """
    if book is None or not book.entries:
        return []
    render_fn = render or (lambda text: text)
    scan_depth = book.scan_depth if book.scan_depth is not None else default_scan_depth
    budget = book.token_budget if book.token_budget and book.token_budget > 0 else None
    budget = budget or default_token_budget

    candidates = [
        c
        for i, e in enumerate(book.entries)
        if (c := _candidate(i, e, max(0, scan_depth), render_fn)) is not None
    ]

    chat_text = _chat_text_reader(history)
    admitted: list[_Candidate] = []
    tokens: dict[int, int] = {}
    used = 0
    recursion_text = ""
    for scan_pass in range(MAX_SCAN_PASSES):
        waiting = [c for c in candidates if c.index not in tokens]
        new = _matching(waiting, scan_pass, chat_text, recursion_text)
        admitted_now, overflowed = _admit(new, count_tokens, budget - used, tokens)
        used += sum(tokens[c.index] for c in admitted_now)
        admitted.extend(admitted_now)
        if overflowed or not book.recursive_scanning:
            break
        fresh = [c.content for c in admitted_now if not c.prevent_recursion]
        if not fresh:
            break
        recursion_text = "\n".join(filter(None, [recursion_text, *fresh]))

    admitted.sort(key=lambda c: (c.entry.insertion_order, c.index))
    return [LoreHit(c.entry, c.content, c.position, tokens[c.index]) for c in admitted]


def _chat_text_reader(history: Sequence[str]) -> Callable[[int], str]:
    """The newest ``depth`` messages as one text, joined once per depth (many entries share
    a scan depth, and every pass reads it again)."""
    by_depth: dict[int, str] = {}

    def chat_text(depth: int) -> str:
        if depth not in by_depth:
            by_depth[depth] = "\n".join(history[-depth:]) if depth > 0 else ""
        return by_depth[depth]

    return chat_text


def _matching(
    waiting: list[_Candidate],
    scan_pass: int,
    chat_text: Callable[[int], str],
    recursion_text: str,
) -> list[_Candidate]:
    """The waiting entries this pass activates: the first pass reads the chat (constant
    entries always fire); later passes also read the entries admitted so far."""
    if scan_pass == 0:
        return [c for c in waiting if c.constant or c.matches(chat_text(c.scan_depth))]
    return [
        c
        for c in waiting
        if not c.exclude_recursion and c.matches(chat_text(c.scan_depth) + "\n" + recursion_text)
    ]


def _admit(
    new: list[_Candidate],
    count_tokens: Callable[[str], int],
    room: int,
    tokens: dict[int, int],
) -> tuple[list[_Candidate], bool]:
    """Admit ``new`` entries in budget order while they fit in ``room`` tokens.

    Records each admitted entry's cost in ``tokens``; the flag says the budget ran out, which
    ends the scan (SillyTavern stops recursing once the budget overflows).
    """
    admitted: list[_Candidate] = []
    for cand in sorted(new, key=_Candidate.budget_rank):
        cost = count_tokens(cand.content)
        if cost > room:
            return admitted, True
        room -= cost
        tokens[cand.index] = cost
        admitted.append(cand)
    return admitted, False


def split_by_position(hits: Sequence[LoreHit]) -> dict[Position, list[LoreHit]]:
    """Hits grouped by slot, each group keeping the insertion order of ``hits``."""
    groups: dict[Position, list[LoreHit]] = {"before_char": [], "after_char": []}
    for hit in hits:
        groups[hit.position].append(hit)
    return groups
