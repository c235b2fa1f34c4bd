"""Token-aware chunking with overlap (langchain-text-splitters), page by page.

Chunk sizes are counted in the embedding model's own tokens, because the model ignores what
lies past its window (256 tokens for all-MiniLM-L6-v2): a chunk measured in characters can
silently lose its end. Splits prefer paragraph, then line, then sentence boundaries; chunks
never cross a PDF page, so every chunk cites exactly one page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_text_splitters import RecursiveCharacterTextSplitter

from knowledge.loaders import Section

SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ": ", ", ", " ", ""]


def chunk_sections(
    sections: Sequence[Section],
    count_tokens: Callable[[str], int],
    chunk_tokens: int,
    overlap_tokens: int,
) -> list[tuple[int | None, str]]:
    """``(page, text)`` pieces of at most ``chunk_tokens`` tokens, in document order."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=min(overlap_tokens, chunk_tokens // 2),
        length_function=count_tokens,
        separators=SEPARATORS,
        keep_separator="end",
        strip_whitespace=True,
    )
    out: list[tuple[int | None, str]] = []
    for section in sections:
        for piece in splitter.split_text(section.text):
            if piece.strip():
                out.append((section.page, piece.strip()))
    return out
