"""The knowledge layer's heavy parts (embedder, vector store, keyword index), built on first use.

A process that never searches or ingests (a CLI, a test of something else) loads no model and
opens no store. ``knowledge/factory.py`` picks each implementation from the settings.
"""

from __future__ import annotations

import logging
import threading

from core.settings import Settings
from knowledge.base import Embedder, KeywordIndex, VectorStore

log = logging.getLogger(__name__)


class KnowledgeStores:
    """The embedder, the vector store and the keyword index, shared by every part."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._store: VectorStore | None = None
        self._keywords: KeywordIndex | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from knowledge.factory import make_embedder

                self._embedder = make_embedder(self.settings)
            return self._embedder

    @property
    def store(self) -> VectorStore:
        embedder = self.embedder
        with self._lock:
            if self._store is None:
                from knowledge.factory import make_vector_store

                self._store = make_vector_store(self.settings, embedder)
            return self._store

    @property
    def keywords(self) -> KeywordIndex:
        with self._lock:
            if self._keywords is None:
                from knowledge.factory import make_keyword_index

                self._keywords = make_keyword_index(self.settings)
            return self._keywords

    def drop(self, kb_id: str) -> None:
        """Remove a base from both stores; what cannot be removed now is only logged."""
        for what, drop in (("Chroma", self.store.drop), ("keyword index", self.keywords.drop)):
            try:
                drop(kb_id)
            except Exception as exc:  # left behind, unreachable: no row points at it
                log.warning("could not remove knowledge base %s from the %s: %s", kb_id, what, exc)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._keywords is not None:
                self._keywords.close()
                self._keywords = None
