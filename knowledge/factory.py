"""Pick the knowledge components from the settings: the one place that knows which run.

- embedder: sentence-transformers (``ANIMA_KNOWLEDGE_EMBEDDING_MODEL``)
- vector store: Chroma in-process by default, a Chroma server when
  ``ANIMA_KNOWLEDGE_CHROMA_URL`` is set
- keyword index: tantivy folders under ``<data_dir>/knowledge/keyword``
"""

from __future__ import annotations

from core.settings import Settings
from knowledge.base import Embedder, KeywordIndex, VectorStore


def make_embedder(settings: Settings) -> Embedder:
    from knowledge.sentence_transformer_embedder import SentenceTransformerEmbedder

    k = settings.knowledge
    return SentenceTransformerEmbedder(
        k.embedding_model, batch_size=k.embedding_batch_size, quantize=k.embedding_quantize
    )


def make_vector_store(settings: Settings, embedder: Embedder) -> VectorStore:
    prefix = settings.knowledge.collection_prefix
    match settings.knowledge.chroma_url:
        case None | "":
            from knowledge.chroma_embedded import EmbeddedChromaStore

            return EmbeddedChromaStore(settings.knowledge_dir / "chroma", embedder, prefix)
        case url:
            from knowledge.chroma_http import HttpChromaStore

            return HttpChromaStore(url, embedder, prefix)


def make_keyword_index(settings: Settings) -> KeywordIndex:
    from knowledge.tantivy_index import TantivyKeywordIndex

    return TantivyKeywordIndex(settings.knowledge_dir / "keyword")
