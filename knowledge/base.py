"""The seams of the knowledge layer: embedder, vector store and keyword index.

Each has real alternatives (another embedding model; Chroma in-process or a Chroma server; a
keyword index other than tantivy for a multi-machine install), so each is a ``Protocol`` and
``knowledge/factory.py`` picks the implementation from the settings. Nothing else in the code
knows which one runs.

Every chunk a store holds is tagged with its knowledge base, document and *version* (one
ingest of one file). Stores only add and delete whole versions; which versions count is
decided in the SQL database (``knowledge/records.py``), which is what makes ingestion atomic
across two stores that have no transactions in common.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Chunk:
    """A piece of a document as it is indexed (text plus where it came from)."""

    id: str  # "<version>:<position>", stable across re-runs of the same ingest
    kb_id: str
    document_id: str
    version: str
    filename: str
    page: int | None  # 1-based page for PDFs, None for formats without pages
    position: int  # 0-based order of the chunk in its document
    text: str
    # Title and headings above the chunk: embedded and keyword-indexed with ``text``, never
    # returned as part of it (see ``knowledge/chunking.py``).
    context: str = ""

    @property
    def indexed_text(self) -> str:
        """What the embedder and the keyword index read for this chunk."""
        return f"{self.context}\n{self.text}" if self.context else self.text


@dataclass
class StoredChunk:
    """A chunk read back from the vector store, with its similarity to a query if asked."""

    chunk: Chunk
    similarity: float | None = None
    embedding: list[float] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: str
    version: str
    score: float


@runtime_checkable
class Embedder(Protocol):
    """Turns text into unit-length vectors (cosine similarity = dot product)."""

    @property
    def model_id(self) -> str:
        """What the vectors came from (stored with each knowledge base)."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's own tokenizer (for token-aware chunking)."""
        ...

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads; the rest of a longer text is ignored."""
        ...


@runtime_checkable
class VectorStore(Protocol):
    """Dense vectors of chunks, one collection per knowledge base."""

    def upsert(self, kb_id: str, chunks: Sequence[Chunk]) -> None:
        """Add or overwrite chunks (same id: same chunk), embedding them on the way."""
        ...

    def query(
        self,
        kb_id: str,
        query_embedding: Sequence[float],
        n: int,
        exclude_versions: Collection[str] = (),
    ) -> list[StoredChunk]:
        """The ``n`` nearest chunks outside ``exclude_versions``, most similar first."""
        ...

    def get(
        self, kb_id: str, chunk_ids: Sequence[str], with_embeddings: bool
    ) -> list[StoredChunk]: ...

    def delete_version(self, kb_id: str, version: str) -> None: ...

    def count(self, kb_id: str, version: str | None = None) -> int: ...

    def drop(self, kb_id: str) -> None:
        """Forget a whole knowledge base."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class KeywordIndex(Protocol):
    """A persistent BM25 index of chunk texts, one per knowledge base, updated in place."""

    def add(self, kb_id: str, chunks: Sequence[Chunk]) -> None:
        """Index the chunks (replacing any of the same versions first: safe to repeat)."""
        ...

    def search(
        self, kb_id: str, query: str, n: int, exclude_versions: Collection[str] = ()
    ) -> list[KeywordHit]: ...

    def delete_version(self, kb_id: str, version: str) -> None: ...

    def count(self, kb_id: str, version: str | None = None) -> int: ...

    def drop(self, kb_id: str) -> None: ...

    def close(self) -> None: ...
