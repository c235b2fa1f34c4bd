"""Chunking on the document's own structure: headings and paragraphs, then tokens.

Fixed windows cut answers in half and mix the end of one topic with the start of the next;
on long documents that costs more than any ranking trick wins back. So a chunk here is a run
of whole paragraphs of one section, packed up to the token budget, and a new heading always
starts a new chunk. Only a paragraph longer than the budget is split, at line, then sentence
boundaries, with overlap (langchain-text-splitters).

Sizes are counted in the embedding model's own tokens, because the model ignores what lies
past its window (256 tokens for all-MiniLM-L6-v2): a chunk measured in characters can
silently lose its end. Chunks never cross a PDF page, so every chunk cites exactly one page.

Each chunk also carries its *context*: the document title and the headings above it
("Rules > Combat > Initiative"). The context is embedded and keyword-indexed with the chunk
(a question about "initiative in combat" finds a paragraph that only says "roll a d20"), but
it is not part of the text returned to a prompt, so it costs no prompt space.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from langchain_text_splitters import RecursiveCharacterTextSplitter

from knowledge.loaders import Section

SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ": ", ", ", " ", ""]
# Switches for the benchmark's one-change-at-a-time comparison (``bench/rag.py
# --ablation``); the app always runs with both on.
STRUCTURE_AWARE = True
EMBED_CONTEXT = False
# Bump when a change here cuts the same text into other chunks: bases indexed before are
# then offered a re-index (``knowledge/reindex.py``).
CHUNKING_VERSION = 2
MAX_HEADING_CHARS = 120
MAX_CONTEXT_CHARS = 300
_MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_UNDERLINE = re.compile(r"^([=*\-~^#+])\1{2,}\s*$")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def chunking_signature(tokens: int, overlap: int) -> str:
    """How chunks are cut now (code version and token budget), stored with every version."""
    return f"chunking-{CHUNKING_VERSION}:{tokens}/{overlap}"


@dataclass(frozen=True)
class Piece:
    """One chunk before it gets an id: its text, where it is, and the headings above it."""

    page: int | None
    text: str
    headings: tuple[str, ...]
    start: int  # offset of ``text`` in its section's text


@dataclass(frozen=True)
class _Block:
    start: int
    end: int
    heading: str | None = None  # set for a heading block
    level: int = 0


def _blocks(text: str) -> list[_Block]:
    """Paragraphs and headings of ``text``, as offsets (nothing is copied or rewritten).

    Headings: Markdown ``#`` lines, and a short line underlined with ``===``/``---``/``***``
    (Markdown setext and reStructuredText). The underline characters get levels in the order
    they first appear, as reStructuredText defines them."""
    blocks: list[_Block] = []
    underline_levels: dict[str, int] = {}
    position = 0
    for part in _PARAGRAPH_BREAK.split(text):
        start = text.find(part, position)
        position = start + len(part)
        lines = part.split("\n")
        offsets = [start]
        for line in lines[:-1]:
            offsets.append(offsets[-1] + len(line) + 1)
        body_start: int | None = None
        i = 0
        while i < len(lines):
            stripped = lines[i].strip()
            heading, level, last = None, 0, i
            md = _MARKDOWN_HEADING.match(stripped)
            if md and len(stripped) <= MAX_HEADING_CHARS:
                heading, level = md.group(2), len(md.group(1))
            elif (
                i + 1 < len(lines)
                and 0 < len(stripped) <= MAX_HEADING_CHARS
                and _UNDERLINE.match(lines[i + 1].strip())
            ):
                char = lines[i + 1].strip()[0]
                level = underline_levels.setdefault(char, len(underline_levels) + 1)
                heading, last = stripped, i + 1
            if heading is None:
                if body_start is None:
                    body_start = offsets[i]
                i += 1
                continue
            if body_start is not None:
                blocks.append(_Block(body_start, offsets[i] - 1))
                body_start = None
            blocks.append(
                _Block(offsets[i], offsets[last] + len(lines[last]), heading=heading, level=level)
            )
            i = last + 1
        if body_start is not None and text[body_start:position].strip():
            blocks.append(_Block(body_start, position))
    return blocks


def _path(stack: list[tuple[int, str]]) -> tuple[str, ...]:
    return tuple(h for _, h in stack)


def chunk_structured(
    sections: Sequence[Section],
    count_tokens: Callable[[str], int],
    chunk_tokens: int,
    overlap_tokens: int,
) -> list[Piece]:
    """Pieces of at most ``chunk_tokens`` tokens, in document order, never across a heading
    or a page, and never splitting a paragraph that fits."""
    splitter = _splitter(count_tokens, chunk_tokens, overlap_tokens)
    out: list[Piece] = []
    stack: list[tuple[int, str]] = []  # (level, heading) above the current position
    for section in sections:
        out.extend(_chunk_section(section, stack, count_tokens, chunk_tokens, splitter))
    out = [p for p in out if p.text]
    if not out:  # nothing but headings: index them as they are rather than nothing
        return _chunk_windows(sections, count_tokens, chunk_tokens, overlap_tokens)
    return out


def _chunk_section(
    section: Section,
    stack: list[tuple[int, str]],
    count_tokens: Callable[[str], int],
    chunk_tokens: int,
    splitter: RecursiveCharacterTextSplitter,
) -> list[Piece]:
    """One page (or a whole document without pages); ``stack`` carries the headings over."""
    text = section.text
    out: list[Piece] = []
    run: list[_Block] = []  # paragraphs (and a leading heading) packed so far
    run_tokens = 0

    def flush() -> None:
        nonlocal run, run_tokens
        if run and any(b.heading is None for b in run):
            start, end = run[0].start, run[-1].end
            out.append(Piece(section.page, text[start:end].strip(), _path(stack), start))
        run, run_tokens = [], 0

    for block in _blocks(text):
        piece = text[block.start : block.end]
        if block.heading is not None:
            flush()
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            stack.append((block.level, block.heading))
            run, run_tokens = [block], count_tokens(piece)
            continue
        tokens = count_tokens(piece)
        if run_tokens + tokens <= chunk_tokens:
            run.append(block)
            run_tokens += tokens
            continue
        flush()
        if tokens <= chunk_tokens:
            run, run_tokens = [block], tokens
            continue
        cursor = block.start
        for part in splitter.split_text(piece):
            at = text.find(part, cursor)
            at = at if at >= 0 else cursor
            out.append(Piece(section.page, part.strip(), _path(stack), at))
            cursor = max(cursor, at + 1)
    flush()
    return out


def document_title(filename: str) -> str:
    """A readable title from a file name: ``Sky_(United_Kingdom).txt`` -> ``Sky (United
    Kingdom)``."""
    stem = PurePosixPath(filename).stem if "." in filename else filename
    return " ".join(stem.replace("_", " ").split())


def context_of(title: str, headings: Sequence[str]) -> str:
    """What is embedded and indexed with a chunk besides its text."""
    parts = [title, *headings]
    parts = [p for i, p in enumerate(parts) if p and (i == 0 or p != parts[i - 1])]
    return " > ".join(parts)[:MAX_CONTEXT_CHARS]


def chunk_records(
    sections: Sequence[Section],
    filename: str,
    count_tokens: Callable[[str], int],
    chunk_tokens: int,
    overlap_tokens: int,
) -> list[dict]:
    """The chunks of a document as the ingest job stores them: page, text, position, context."""
    title = document_title(filename)
    if STRUCTURE_AWARE:
        pieces = chunk_structured(sections, count_tokens, chunk_tokens, overlap_tokens)
    else:
        pieces = _chunk_windows(sections, count_tokens, chunk_tokens, overlap_tokens)
    return [
        {
            "page": p.page,
            "text": p.text,
            "position": n,
            "context": context_of(title, p.headings) if EMBED_CONTEXT else "",
        }
        for n, p in enumerate(pieces)
    ]


def _chunk_windows(
    sections: Sequence[Section],
    count_tokens: Callable[[str], int],
    chunk_tokens: int,
    overlap_tokens: int,
) -> list[Piece]:
    """The earlier chunking, kept for the benchmark's comparison: token windows that prefer
    paragraph, line and sentence boundaries but pack across headings and topics."""
    splitter = _splitter(count_tokens, chunk_tokens, overlap_tokens)
    return [
        Piece(section.page, piece.strip(), (), 0)
        for section in sections
        for piece in splitter.split_text(section.text)
        if piece.strip()
    ]


def chunk_sections(
    sections: Sequence[Section],
    count_tokens: Callable[[str], int],
    chunk_tokens: int,
    overlap_tokens: int,
) -> list[tuple[int | None, str]]:
    """``(page, text)`` pieces of at most ``chunk_tokens`` tokens, in document order."""
    pieces = chunk_structured(sections, count_tokens, chunk_tokens, overlap_tokens)
    return [(p.page, p.text) for p in pieces]


def _splitter(
    count_tokens: Callable[[str], int], chunk_tokens: int, overlap_tokens: int
) -> RecursiveCharacterTextSplitter:
    """Splits text over the budget at the gentlest boundary first (paragraph, line, sentence)."""
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=min(overlap_tokens, chunk_tokens // 2),
        length_function=count_tokens,
        separators=SEPARATORS,
        keep_separator="end",
        strip_whitespace=True,
    )
