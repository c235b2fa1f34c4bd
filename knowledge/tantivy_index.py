"""BM25 keyword search beside Chroma, on tantivy: one persistent index folder per base.

Chroma 1.5 has no local BM25 (its ``search()`` and sparse indexes answer "not implemented"
outside Chroma Cloud), so hybrid search needs an index of our own. tantivy (the Rust engine
behind Quickwit) answers in about 0.1 ms over 100k chunks, updates in place (add and delete
by term, about 100 ms per commit) and keeps its index in a folder, so nothing is rebuilt at
start. Only one writer may hold an index at a time, in any process: writes take the lock
briefly (retrying while another process commits) and give it back at once.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import tantivy

from core.files import check_id
from knowledge.base import Chunk, KeywordHit

WRITER_HEAP_BYTES = 32_000_000
LOCK_WAIT_S = 30.0
MAX_QUERY_TERMS = 64
_WORD = re.compile(r"\w+", re.UNICODE)
# English function words (the usual search-engine list, plus question words).
_STOP_TEXT = (
    "a an and are as at be been being but by can could did do does doing for from had has "
    "have having he her hers him his how i if in into is it its itself me my no nor not of "
    "on or our ours she so than that the their theirs them then there these they this "
    "those to too us was we were what when where which while who whom whose why will with "
    "would you your yours"
)
STOP_WORDS = frozenset(_STOP_TEXT.split())
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
MIN_SENTENCE_CHARS = 12
SENTENCE_FANOUT = 3  # sentences read per chunk wanted (several may share a chunk)


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name="en_stem")
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("version", stored=True, tokenizer_name="raw")
    return builder.build()


def query_text(query: str) -> str:
    """The user's words only: tantivy's query syntax (fields, quotes, +/-, AND) never applies,
    so no input can fail to parse or reach another field. English stop words are dropped
    ("what is the name of ..."): they match nearly every chunk and only add noise to BM25,
    unless the query has nothing else."""
    words = _WORD.findall(query.lower())
    content = [w for w in words if w not in STOP_WORDS]
    return " ".join((content or words)[:MAX_QUERY_TERMS])


def sentences_of(text: str) -> list[str]:
    """Sentences (and lines, for lists and tables) of a chunk, for the sentence stage."""
    return [s.strip() for s in _SENTENCE_BREAK.split(text) if len(s.strip()) >= MIN_SENTENCE_CHARS]


class TantivyKeywordIndex:
    """``KeywordIndex`` with a tantivy index per knowledge base under ``root/<kb id>``, and a
    second one of single sentences (each pointing at its chunk) under ``root-sentences``."""

    def __init__(self, root: Path, sentences: bool = True) -> None:
        self._sentences = (
            TantivyKeywordIndex(root.with_name(root.name + "-sentences"), sentences=False)
            if sentences
            else None
        )
        self._root = root
        self._schema = _schema()
        self._indexes: dict[str, tantivy.Index] = {}
        self._lock = threading.Lock()
        self._write_locks: dict[str, threading.Lock] = {}

    def _path(self, kb_id: str) -> Path:
        return self._root / check_id(kb_id, "knowledge base id")

    def _index(self, kb_id: str) -> tantivy.Index:
        with self._lock:
            index = self._indexes.get(kb_id)
            if index is None:
                path = self._path(kb_id)
                path.mkdir(parents=True, exist_ok=True)
                index = tantivy.Index(self._schema, path=str(path), reuse=True)
                self._indexes[kb_id] = index
            return index

    def _write_lock(self, kb_id: str) -> threading.Lock:
        with self._lock:
            return self._write_locks.setdefault(kb_id, threading.Lock())

    def _writer(self, index: tantivy.Index) -> tantivy.IndexWriter:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                return index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
            except ValueError as exc:  # LockBusy: another process is committing
                if "LockBusy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _write(self, kb_id: str, versions: set[str], chunks: Sequence[Chunk]) -> None:
        docs = [(chunk.indexed_text, chunk.id, chunk.version) for chunk in chunks]
        self._write_docs(kb_id, versions, docs)

    def _write_docs(
        self, kb_id: str, versions: set[str], docs: Sequence[tuple[str, str, str]]
    ) -> None:
        index = self._index(kb_id)
        with self._write_lock(kb_id):
            writer = self._writer(index)
            try:
                for version in versions:
                    writer.delete_documents_by_term("version", version)
                for text, chunk_id, version in docs:
                    writer.add_document(
                        tantivy.Document(text=text, chunk_id=chunk_id, version=version)
                    )
                writer.commit()
            except BaseException:
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()  # ends the writer and gives the lock back

    def add(self, kb_id: str, chunks: Sequence[Chunk]) -> None:
        """Replace the versions of ``chunks`` with exactly these chunks, in one commit."""
        if not chunks:
            return
        versions = {c.version for c in chunks}
        if self._sentences is not None:  # first, so a complete chunk index implies both
            docs = [(t, c.id, c.version) for c in chunks for t in sentences_of(c.text)]
            self._sentences._write_docs(kb_id, versions, docs)
        self._write(kb_id, versions, chunks)

    def delete_version(self, kb_id: str, version: str) -> None:
        if self._sentences is not None:
            self._sentences.delete_version(kb_id, version)
        if self._path(kb_id).exists():
            self._write(kb_id, {version}, [])

    def search_sentences(
        self, kb_id: str, query: str, n: int, exclude_versions: Collection[str] = ()
    ) -> list[KeywordHit]:
        """Chunks ranked by their best-matching single sentence (bases indexed before the
        sentence index existed simply have none)."""
        if self._sentences is None:
            return []
        found = self._sentences.search(kb_id, query, n * SENTENCE_FANOUT, exclude_versions)
        best: dict[str, KeywordHit] = {}
        for hit in found:
            best.setdefault(hit.chunk_id, hit)
        return list(best.values())[:n]

    def search(
        self, kb_id: str, query: str, n: int, exclude_versions: Collection[str] = ()
    ) -> list[KeywordHit]:
        text = query_text(query)
        if not text or not self._path(kb_id).exists():
            return []
        index = self._index(kb_id)
        index.reload()  # see commits made since (by this process or a worker)
        searcher = index.searcher()
        parsed = index.parse_query(text, ["text"])
        if exclude_versions:
            clauses = [(tantivy.Occur.Must, parsed)]
            clauses += [
                (tantivy.Occur.MustNot, tantivy.Query.term_query(self._schema, "version", v))
                for v in sorted(exclude_versions)
            ]
            parsed = tantivy.Query.boolean_query(clauses)
        hits = []
        for score, address in searcher.search(parsed, max(1, n)).hits:
            doc = searcher.doc(address)
            hits.append(
                KeywordHit(
                    chunk_id=doc["chunk_id"][0], version=doc["version"][0], score=float(score)
                )
            )
        return hits

    def count(self, kb_id: str, version: str | None = None) -> int:
        if not self._path(kb_id).exists():
            return 0
        index = self._index(kb_id)
        index.reload()
        searcher = index.searcher()
        if version is None:
            return int(searcher.num_docs)
        term = tantivy.Query.term_query(self._schema, "version", version)
        return int(searcher.search(term, 1, count=True).count)

    def drop(self, kb_id: str) -> None:
        if self._sentences is not None:
            self._sentences.drop(kb_id)
        with self._lock:
            self._indexes.pop(kb_id, None)
        shutil.rmtree(self._path(kb_id), ignore_errors=True)

    def close(self) -> None:
        if self._sentences is not None:
            self._sentences.close()
        with self._lock:
            self._indexes.clear()
