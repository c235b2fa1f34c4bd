"""The retrieval pipeline: candidate stages, weighted rank fusion, score floor, neighbour merge.

Every caller (grounded chat, the search API, the retrieval trace, the studio's "try a
query") goes through ``retrieve``, so what a reply is grounded on is what a search shows.

Stages, each a ranked list of chunk ids:

- ``dense``: Chroma, cosine similarity of MiniLM vectors (finds paraphrases, misses rare
  names and numbers);
- ``keyword``: tantivy BM25 with English stemming and stop words (finds exact words and
  their inflections, misses paraphrases);
- ``sentence``: BM25 over single sentences, each hit standing for the chunk around it (a
  question usually matches one sentence; in a long chunk that sentence's words are diluted).

Reciprocal rank fusion (score = sum of weight / (k + rank) over the lists) needs no score
calibration between stages. The weights were tuned on the SQuAD paragraph set only
(``bench/rag.py --tune``) and then frozen, so the long-document numbers are not fitted to.

The floor is on cosine similarity to the query, for every candidate (a keyword-only hit is
scored with its stored vector), so small talk ("hi!") pulls nothing into the prompt however
many words it shares with a document.

Neighbour merge: when a chunk next to one already chosen (same document version, adjacent
position) qualifies, it joins that hit instead of taking a slot of its own, so the top
results are not several slices of one passage and a passage cut by a chunk boundary comes
back whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from knowledge.base import Chunk, Embedder, KeywordHit, KeywordIndex, StoredChunk, VectorStore

# Candidates each list contributes, relative to k.
CANDIDATE_FACTOR = 4
MIN_CANDIDATES = 20

DENSE, KEYWORD, SENTENCE, NEIGHBOUR = "dense", "keyword", "sentence", "neighbour"


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline does; the defaults are what the benchmark kept."""

    # From ``bench/rag.py --tune`` on the SQuAD paragraphs (705 questions): keyword 0.5-1.5 x
    # sentence 0-1 gave MRR 0.880-0.917 and recall@5 0.974-0.986; 1/1/1 had MRR 0.916 and
    # recall@5 0.982 (1/1/0: 0.895 and 0.983).
    weights: tuple[tuple[str, float], ...] = ((DENSE, 1.0), (KEYWORD, 1.0), (SENTENCE, 1.0))
    neighbour_merge: bool = True
    max_merged: int = 3  # chunks in one merged hit

    def weight(self, stage: str) -> float:
        return dict(self.weights).get(stage, 0.0)


DEFAULT = PipelineConfig()


@dataclass
class Hit:
    """One retrieved passage (a chunk, or adjacent chunks merged) with how it was found."""

    chunk: Chunk  # the best-ranked chunk of the passage
    score: float  # fused, normalised to 0..1 (hybrid) or the cosine similarity (dense)
    similarity: float
    dense_rank: int | None = None  # 1-based rank in the dense list, None if absent
    keyword_rank: int | None = None
    keyword_score: float | None = None
    sentence_rank: int | None = None
    found_by: list[str] = field(default_factory=list)  # stages, e.g. ["dense", "keyword"]
    parts: list[Chunk] = field(default_factory=list)  # in document order; [chunk] if unmerged

    @property
    def text(self) -> str:
        parts = self.parts or [self.chunk]
        return "\n\n".join(c.text for c in parts)


@dataclass
class Retrieval:
    query: str
    mode: str
    kb_ids: list[str]
    hits: list[Hit] = field(default_factory=list)


def rrf(
    lists: Sequence[Sequence[str]], k: int, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Reciprocal rank fusion of ranked id lists, each list weighted (1.0 by default)."""
    scores: dict[str, float] = {}
    for n, ranked in enumerate(lists):
        w = 1.0 if weights is None else weights[n]
        if w <= 0:
            continue
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return scores


def _sentence_search(keywords: KeywordIndex, kb_id: str, query: str, n: int, exclude: set[str]):
    search = getattr(keywords, "search_sentences", None)
    return search(kb_id, query, n, exclude) if search is not None else []


@dataclass
class _Candidates:
    """Each stage's candidates from every base; ranked once ``_keep_active`` has run."""

    dense: list[StoredChunk] = field(default_factory=list)
    keyword: list[tuple[str, KeywordHit]] = field(default_factory=list)  # (kb_id, hit)
    sentence: list[tuple[str, KeywordHit]] = field(default_factory=list)

    def ranks(self) -> dict[str, dict[str, int]]:
        """1-based rank of each chunk id in each stage's list."""
        return {
            DENSE: {s.chunk.id: r for r, s in enumerate(self.dense, start=1)},
            KEYWORD: {h.chunk_id: r for r, (_, h) in enumerate(self.keyword, start=1)},
            SENTENCE: {h.chunk_id: r for r, (_, h) in enumerate(self.sentence, start=1)},
        }


def retrieve(
    *,
    query: str,
    kb_ids: Sequence[str],
    k: int,
    mode: str,
    min_score: float,
    rrf_k: int,
    embedder: Embedder,
    store: VectorStore,
    keywords: KeywordIndex,
    active: Callable[[set[str]], set[str]],
    hidden: Callable[[str], set[str]] = lambda _kb: set(),
    config: PipelineConfig | None = None,
) -> Retrieval:
    """The ``k`` best passages of the given bases.

    ``hidden(kb_id)``: versions of a base that must not compete for the candidate slots
    (being written, replaced, dropped); usually none or a few, so the stores filter them out.
    ``active(versions)``: which of the versions found count, checked again after the search
    in case one was switched meanwhile.
    """
    config = config or DEFAULT
    result = Retrieval(query=query, mode=mode, kb_ids=list(kb_ids))
    if not query.strip() or not kb_ids:
        return result
    vector = embedder.embed_query(query)
    n = max(k * CANDIDATE_FACTOR, MIN_CANDIDATES)
    hybrid = mode == "hybrid"
    found = _search_stages(query, kb_ids, vector, n, hybrid, store, keywords, hidden, config)
    found = _keep_active(found, active, n)
    by_id: dict[str, StoredChunk] = {s.chunk.id: s for s in found.dense}
    if hybrid:
        order, scores = _fuse(found, rrf_k, config)
        by_id.update(_fetch_keyword_only(found, order[:n], by_id, vector, store))
    else:
        order = [s.chunk.id for s in found.dense]
        scores = {s.chunk.id: float(s.similarity or 0.0) for s in found.dense}
    result.hits = _select(order, scores, by_id, found, k, min_score, config)
    return result


def _search_stages(
    query: str,
    kb_ids: Sequence[str],
    vector: list[float],
    n: int,
    hybrid: bool,
    store: VectorStore,
    keywords: KeywordIndex,
    hidden: Callable[[str], set[str]],
    config: PipelineConfig,
) -> _Candidates:
    """Up to ``n`` candidates per base from each stage the mode and weights switch on."""
    found = _Candidates()
    for kb_id in kb_ids:
        exclude = hidden(kb_id)
        found.dense.extend(store.query(kb_id, vector, n, exclude))
        if hybrid and config.weight(KEYWORD) > 0:
            found.keyword.extend((kb_id, h) for h in keywords.search(kb_id, query, n, exclude))
        if hybrid and config.weight(SENTENCE) > 0:
            hits = _sentence_search(keywords, kb_id, query, n, exclude)
            found.sentence.extend((kb_id, h) for h in hits)
    return found


def _keep_active(found: _Candidates, active: Callable[[set[str]], set[str]], n: int) -> _Candidates:
    """Drop candidates of versions no longer active; rank each stage across bases, top ``n``."""
    live = active(
        {s.chunk.version for s in found.dense}
        | {h.version for _, h in found.keyword}
        | {h.version for _, h in found.sentence}
    )
    return _Candidates(
        dense=sorted(
            (s for s in found.dense if s.chunk.version in live),
            key=lambda s: s.similarity or 0.0,
            reverse=True,
        )[:n],
        keyword=sorted(
            ((kb, h) for kb, h in found.keyword if h.version in live),
            key=lambda kh: kh[1].score,
            reverse=True,
        )[:n],
        sentence=sorted(
            ((kb, h) for kb, h in found.sentence if h.version in live),
            key=lambda kh: kh[1].score,
            reverse=True,
        )[:n],
    )


def _fuse(
    found: _Candidates, rrf_k: int, config: PipelineConfig
) -> tuple[list[str], dict[str, float]]:
    """Chunk ids in fused order, with scores normalised so a first place in every stage is 1."""
    stages = [
        (DENSE, [s.chunk.id for s in found.dense]),
        (KEYWORD, [h.chunk_id for _, h in found.keyword]),
        (SENTENCE, [h.chunk_id for _, h in found.sentence]),
    ]
    weights = [config.weight(name) for name, _ in stages]
    fused = rrf([ids for _, ids in stages], rrf_k, weights)
    best = sum(w for w in weights if w > 0) / (rrf_k + 1)
    order = sorted(fused, key=lambda i: fused[i], reverse=True)
    return order, {i: fused[i] / best for i in order}


def _fetch_keyword_only(
    found: _Candidates,
    top: list[str],
    by_id: dict[str, StoredChunk],
    vector: list[float],
    store: VectorStore,
) -> dict[str, StoredChunk]:
    """Text and similarity of the ``top`` candidates that only keyword stages found.

    The score floor is on cosine similarity, so such a chunk is scored with its stored vector.
    """
    missing: dict[str, list[str]] = {}
    for kb_id, hit in found.keyword + found.sentence:
        if hit.chunk_id not in by_id and hit.chunk_id in top:
            ids = missing.setdefault(kb_id, [])
            if hit.chunk_id not in ids:
                ids.append(hit.chunk_id)
    fetched: dict[str, StoredChunk] = {}
    for kb_id, ids in missing.items():
        for stored in store.get(kb_id, ids, with_embeddings=True):
            emb = stored.embedding or []
            stored.similarity = float(sum(a * b for a, b in zip(vector, emb, strict=False)))
            fetched[stored.chunk.id] = stored
    return fetched


def _select(
    order: list[str],
    scores: dict[str, float],
    by_id: dict[str, StoredChunk],
    found: _Candidates,
    k: int,
    min_score: float,
    config: PipelineConfig,
) -> list[Hit]:
    """Walk ``order``: skip what is under the floor, merge neighbours, stop at ``k`` hits."""
    ranks = found.ranks()
    keyword_score = {h.chunk_id: h.score for _, h in found.keyword}
    hits: list[Hit] = []
    for chunk_id in order:
        stored = by_id.get(chunk_id)
        if stored is None or stored.similarity is None or stored.similarity < min_score:
            continue
        found_by = [name for name in (DENSE, KEYWORD, SENTENCE) if chunk_id in ranks[name]]
        if config.neighbour_merge and _merge(hits, stored.chunk, found_by, config):
            continue
        hits.append(
            Hit(
                chunk=stored.chunk,
                score=round(scores[chunk_id], 6),
                similarity=round(stored.similarity, 6),
                dense_rank=ranks[DENSE].get(chunk_id),
                keyword_rank=ranks[KEYWORD].get(chunk_id),
                keyword_score=keyword_score.get(chunk_id),
                sentence_rank=ranks[SENTENCE].get(chunk_id),
                found_by=found_by,
                parts=[stored.chunk],
            )
        )
        if len(hits) >= k:
            break
    return hits


def _merge(hits: list[Hit], chunk: Chunk, found_by: list[str], config: PipelineConfig) -> bool:
    """Join ``chunk`` to a chosen hit it is adjacent to; False if there is none."""
    for hit in hits:
        parts = hit.parts
        if parts[0].version != chunk.version or len(parts) >= config.max_merged:
            continue
        if parts[0].page != chunk.page:
            continue  # a citation names one page
        if chunk.position == parts[0].position - 1:
            parts.insert(0, chunk)
        elif chunk.position == parts[-1].position + 1:
            parts.append(chunk)
        else:
            continue
        hit.found_by.append(f"{NEIGHBOUR}:" + "+".join(found_by))
        return True
    return False
