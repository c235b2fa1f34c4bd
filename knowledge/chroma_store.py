"""Chroma as Anima's vector store: one collection per knowledge base, our own embeddings.

Chroma's default embedding function downloads an ONNX model at first use and fails offline,
so every collection is opened with ``AnimaEmbeddingFunction``, which wraps the configured
``Embedder``: Chroma embeds chunk texts through it on ``upsert`` (batched by the embedder).
Queries pass a vector the retriever computed once, because the same query vector also scores
keyword-only hits against the score floor and serves every base an agent uses.

The two ways to reach Chroma differ only in the client: ``chroma_embedded.py``
(``PersistentClient`` in the data directory, the default) and ``chroma_http.py``
(``HttpClient`` to a ``chroma run`` server).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Sequence
from typing import Any

from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection as ChromaCollection
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.errors import NotFoundError as ChromaNotFound
from chromadb.utils.embedding_functions import register_embedding_function

from knowledge.base import Chunk, Embedder, StoredChunk

# Chroma metadata cannot hold None: page 0 stands for "this format has no pages".
NO_PAGE = 0
# Chroma's upsert payloads are bounded; larger batches are split.
MAX_BATCH = 512


@register_embedding_function
class AnimaEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's side of our ``Embedder`` (registered, so Chroma can store its name/config)."""

    def __init__(self, embedder: Embedder | None = None, model: str | None = None) -> None:
        if embedder is None:
            from knowledge.sentence_transformer_embedder import SentenceTransformerEmbedder

            embedder = SentenceTransformerEmbedder(model or "bundled:all-minilm-l6-v2")
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return self.embedder.embed_documents(list(input))  # type: ignore[return-value]

    def embed_query(self, input: Documents) -> Embeddings:
        return [self.embedder.embed_query(text) for text in input]  # type: ignore[misc]

    @staticmethod
    def name() -> str:
        return "anima-sentence-transformer"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.embedder.model_id}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> AnimaEmbeddingFunction:
        return AnimaEmbeddingFunction(model=config.get("model"))

    def default_space(self) -> Any:
        return "cosine"

    def supported_spaces(self) -> list[Any]:
        return ["cosine"]


class ChromaVectorStore:
    """``VectorStore`` on any Chroma client; subclasses only build the client."""

    def __init__(self, client: ClientAPI, embedder: Embedder, prefix: str) -> None:
        self._client = client
        self._ef = AnimaEmbeddingFunction(embedder)
        self._prefix = prefix
        self._collections: dict[str, ChromaCollection] = {}
        self._lock = threading.Lock()

    def collection_name(self, kb_id: str) -> str:
        return f"{self._prefix}-kb-{kb_id}"

    def _collection(self, kb_id: str) -> ChromaCollection:
        with self._lock:
            found = self._collections.get(kb_id)
            if found is None:
                found = self._client.get_or_create_collection(
                    self.collection_name(kb_id),
                    embedding_function=self._ef,  # type: ignore[arg-type]
                    configuration={"hnsw": {"space": "cosine"}},
                )
                self._collections[kb_id] = found
            return found

    def upsert(self, kb_id: str, chunks: Sequence[Chunk]) -> None:
        self._upsert(kb_id, chunks, None)

    def upsert_embeddings(
        self, kb_id: str, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]]
    ) -> None:
        """Store chunks with vectors computed elsewhere (benchmarks, re-indexing)."""
        self._upsert(kb_id, chunks, embeddings)

    def _upsert(
        self,
        kb_id: str,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]] | None,
    ) -> None:
        """Upsert in batches Chroma accepts; without ``embeddings`` its embedding function
        (ours) computes them."""
        collection = self._collection(kb_id)
        for start in range(0, len(chunks), MAX_BATCH):
            batch = chunks[start : start + MAX_BATCH]
            if embeddings is not None:
                vectors = embeddings[start : start + MAX_BATCH]
            else:  # the context (title, headings) is embedded with the text, not stored in it
                vectors = self._ef.embedder.embed_documents([c.indexed_text for c in batch])
            collection.upsert(
                ids=[c.id for c in batch],
                documents=[c.text for c in batch],
                metadatas=[_metadata(c) for c in batch],
                embeddings=[list(e) for e in vectors],
            )

    def query(
        self,
        kb_id: str,
        query_embedding: Sequence[float],
        n: int,
        exclude_versions: Collection[str] = (),
    ) -> list[StoredChunk]:
        collection = self._collection(kb_id)
        where: Any = {"version": {"$nin": sorted(exclude_versions)}} if exclude_versions else None
        result = collection.query(
            query_embeddings=[list(query_embedding)],
            n_results=max(1, n),
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        ids = result["ids"][0]
        docs = (result["documents"] or [[]])[0]
        metas = (result["metadatas"] or [[]])[0]
        dists = (result["distances"] or [[]])[0]
        return [
            StoredChunk(_chunk(kb_id, i, d, m), similarity=1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def get(
        self, kb_id: str, chunk_ids: Sequence[str], with_embeddings: bool = False
    ) -> list[StoredChunk]:
        if not chunk_ids:
            return []
        include: list[Any] = ["documents", "metadatas"]
        if with_embeddings:
            include.append("embeddings")
        result = self._collection(kb_id).get(ids=list(chunk_ids), include=include)
        embeddings = result.get("embeddings")
        out = []
        for n, (i, d, m) in enumerate(
            zip(result["ids"], result["documents"] or [], result["metadatas"] or [], strict=True)
        ):
            vector = (
                [float(x) for x in embeddings[n]]
                if with_embeddings and embeddings is not None
                else None
            )
            out.append(StoredChunk(_chunk(kb_id, i, d, m), embedding=vector))
        return out

    def delete_version(self, kb_id: str, version: str) -> None:
        self._collection(kb_id).delete(where={"version": version})

    def count(self, kb_id: str, version: str | None = None) -> int:
        collection = self._collection(kb_id)
        if version is None:
            return collection.count()
        return len(collection.get(where={"version": version}, include=[])["ids"])

    def drop(self, kb_id: str) -> None:
        with self._lock:
            self._collections.pop(kb_id, None)
            with contextlib.suppress(ChromaNotFound, ValueError):
                self._client.delete_collection(self.collection_name(kb_id))

    def close(self) -> None:
        with self._lock:
            self._collections.clear()


def _metadata(chunk: Chunk) -> dict[str, Any]:
    return {
        "document_id": chunk.document_id,
        "version": chunk.version,
        "filename": chunk.filename,
        "page": chunk.page if chunk.page is not None else NO_PAGE,
        "position": chunk.position,
        "context": chunk.context,
    }


def _chunk(kb_id: str, chunk_id: str, text: str | None, meta: Any) -> Chunk:
    meta = meta or {}
    page = int(meta.get("page") or NO_PAGE)
    return Chunk(
        id=chunk_id,
        kb_id=kb_id,
        document_id=str(meta.get("document_id", "")),
        version=str(meta.get("version", "")),
        filename=str(meta.get("filename", "")),
        page=page if page != NO_PAGE else None,
        position=int(meta.get("position") or 0),
        text=text or "",
        context=str(meta.get("context") or ""),
    )
