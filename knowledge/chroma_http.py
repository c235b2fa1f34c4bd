"""Chroma over HTTP (``HttpClient``) to a ``chroma run`` server: several processes or machines
share one vector store. Set ``ANIMA_KNOWLEDGE_CHROMA_URL`` (e.g. ``http://127.0.0.1:8000``)."""

from __future__ import annotations

from urllib.parse import urlsplit

import chromadb
from chromadb.config import Settings as ChromaSettings

from core.errors import BackendError
from knowledge.base import Embedder
from knowledge.chroma_store import ChromaVectorStore


class HttpChromaStore(ChromaVectorStore):
    def __init__(self, url: str, embedder: Embedder, prefix: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"ANIMA_KNOWLEDGE_CHROMA_URL is not an http(s) URL: {url!r}")
        try:
            client = chromadb.HttpClient(
                host=parts.hostname,
                port=parts.port or (443 if parts.scheme == "https" else 8000),
                ssl=parts.scheme == "https",
                settings=ChromaSettings(anonymized_telemetry=False),
            )
        except Exception as exc:  # the client checks the server at once
            raise BackendError(f"cannot reach the Chroma server at {url}: {exc}") from exc
        super().__init__(client, embedder, prefix)
