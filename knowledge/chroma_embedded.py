"""Chroma in-process (``PersistentClient``), stored under ``<data_dir>/knowledge/chroma``.

The default: nothing to start, and the index survives restarts, so documents are embedded once
(not at every start). One process at a time should open the folder; a scaled-out install
points every process at a Chroma server instead (``chroma_http.py``).
"""

from __future__ import annotations

from pathlib import Path

import chromadb
from chromadb.config import Settings as ChromaSettings

from knowledge.base import Embedder
from knowledge.chroma_store import ChromaVectorStore


class EmbeddedChromaStore(ChromaVectorStore):
    def __init__(self, path: Path, embedder: Embedder, prefix: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(path), settings=ChromaSettings(anonymized_telemetry=False)
        )
        super().__init__(client, embedder, prefix)

    def close(self) -> None:
        super().close()
        self._client.close()  # type: ignore[attr-defined]  (releases the SQLite files)
