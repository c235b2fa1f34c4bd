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


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("text", stored=False, tokenizer_name="en_stem")
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("version", stored=True, tokenizer_name="raw")
    return builder.build()


def query_text(query: str) -> str:
    """The user's words only: tantivy's query syntax (fields, quotes, +/-, AND) never applies,
    so no input can fail to parse or reach another field."""
    words = _WORD.findall(query.lower())[:MAX_QUERY_TERMS]
    return " ".join(words)


class TantivyKeywordIndex:
    """``KeywordIndex`` with a tantivy index per knowledge base under ``root/<kb id>``."""

    def __init__(self, root: Path) -> None:
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
        index = self._index(kb_id)
        with self._write_lock(kb_id):
            writer = self._writer(index)
            try:
                for version in versions:
                    writer.delete_documents_by_term("version", version)
                for chunk in chunks:
                    writer.add_document(
                        tantivy.Document(text=chunk.text, chunk_id=chunk.id, version=chunk.version)
                    )
                writer.commit()
            except BaseException:
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()  # ends the writer and gives the lock back

    def add(self, kb_id: str, chunks: Sequence[Chunk]) -> None:
        """Replace the versions of ``chunks`` with exactly these chunks, in one commit."""
        if chunks:
            self._write(kb_id, {c.version for c in chunks}, chunks)

    def delete_version(self, kb_id: str, version: str) -> None:
        if self._path(kb_id).exists():
            self._write(kb_id, {version}, [])

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
        with self._lock:
            self._indexes.pop(kb_id, None)
        shutil.rmtree(self._path(kb_id), ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            self._indexes.clear()
