"""The retrieval pipeline: structure-aware chunks, stemmed keyword search without stop words,
the sentence stage, neighbour merge, and a trace that names the stage that found each chunk.

The unit tests use a word count as the token counter and small in-memory stores, so they say
exactly which chunk should come back; the API test runs the real pipeline (bundled MiniLM,
Chroma, tantivy, the ingest job) end to end.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import knowledge.chunking as chunking
from container import Services
from knowledge.base import Chunk, KeywordHit, StoredChunk
from knowledge.chunking import chunk_records, document_title
from knowledge.loaders import Section
from knowledge.retrieval import PipelineConfig, retrieve
from knowledge.tantivy_index import TantivyKeywordIndex, query_text, sentences_of
from tests.knowledge.test_knowledge_api import _create_base, _ingest, _search

RULEBOOK = """# Rulebook

Welcome to the game. Read this first.

## Combat

Roll a twenty-sided die for initiative. The highest roll acts first.

Each turn a fighter may move and attack once.

## Magic

Spells cost mana. A wizard regains mana at dawn.
"""


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
def with_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """The title and section path embedded with each chunk (a switch the benchmark measures)."""
    monkeypatch.setattr(chunking, "EMBED_CONTEXT", True)


def test_structure_chunking_keeps_headings_with_their_sections(with_context: None) -> None:
    records = chunk_records([Section(None, RULEBOOK)], "rule_book.md", words, 200, 20)
    assert [r["context"] for r in records] == [
        "rule book > Rulebook",
        "rule book > Rulebook > Combat",
        "rule book > Rulebook > Magic",
    ]
    combat = records[1]["text"]
    assert combat.startswith("## Combat") and "initiative" in combat and "attack once" in combat
    assert "mana" not in combat  # a new heading always starts a new chunk
    assert [r["position"] for r in records] == [0, 1, 2]


def test_structure_chunking_packs_whole_paragraphs_and_splits_only_long_ones(
    with_context: None,
) -> None:
    paragraphs = [f"Paragraph {n} " + "word " * 30 for n in range(4)]
    long_one = "Sentence with several words here. " * 40
    text = "\n\n".join([*paragraphs, long_one])
    records = chunk_records([Section(3, text)], "notes.txt", words, 70, 10)
    texts = [r["text"] for r in records]
    # two 32-word paragraphs fit a 70-word budget, three do not; no paragraph is cut
    assert texts[0].startswith("Paragraph 0") and "Paragraph 1" in texts[0]
    assert texts[1].startswith("Paragraph 2") and "Paragraph 3" in texts[1]
    assert len(texts) > 3 and all(words(t) <= 70 for t in texts[2:])
    assert {r["page"] for r in records} == {3}
    assert all(r["context"] == "notes" for r in records)


def test_restructuredtext_underlined_headings_give_the_section_path(with_context: None) -> None:
    text = (
        "Assignment statements\n*********************\n\nIntro.\n\n"
        "Augmented assignment\n====================\n\nAn augmented assignment evaluates once."
    )
    records = chunk_records([Section(None, text)], "ref.txt", words, 200, 20)
    assert records[-1]["context"] == "ref > Assignment statements > Augmented assignment"
    assert records[-1]["text"].endswith("evaluates once.")


def test_a_document_of_headings_only_is_still_indexed() -> None:
    records = chunk_records([Section(None, "# Index\n\n## Chapter one")], "toc.md", words, 50, 5)
    assert [r["text"] for r in records] == ["# Index\n\n## Chapter one"]


def test_document_title_from_a_file_name() -> None:
    assert document_title("Sky_(United_Kingdom).txt") == "Sky (United Kingdom)"


def _chunk(position: int, text: str, version: str = "v1") -> Chunk:
    return Chunk(
        id=f"{version}:{position}",
        kb_id="kb",
        document_id="d",
        version=version,
        filename="book.txt",
        page=None,
        position=position,
        text=text,
    )


def test_keyword_index_stems_and_ignores_stop_words(tmp_path: Path) -> None:
    index = TantivyKeywordIndex(tmp_path / "keyword")
    index.add("kb", [_chunk(0, "She runs along the river every morning."), _chunk(1, "Bread.")])
    assert [h.chunk_id for h in index.search("kb", "running", 5)] == ["v1:0"]
    assert query_text("What is the name of the river?") == "name river"
    assert query_text("who are you") == "who are you"  # nothing but stop words: keep them
    # the sentence stage points at the chunk around the sentence
    assert [h.chunk_id for h in index.search_sentences("kb", "mornings", 5)] == ["v1:0"]
    assert index.count("kb", "v1") == 2
    index.delete_version("kb", "v1")
    assert index.search_sentences("kb", "mornings", 5) == []
    index.close()


def test_sentences_of_splits_sentences_and_lines() -> None:
    assert sentences_of("One sentence here. Another one here!\nA list line item") == [
        "One sentence here.",
        "Another one here!",
        "A list line item",
    ]


class _Embedder:
    model_id, dimensions, max_tokens = "fake", 2, 256

    def embed_query(self, text: str) -> list[float]:
        return [1.0, 0.0]


class _Store:
    """Dense results in a fixed order; every chunk is similar enough to pass the floor."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = list(chunks)

    def query(
        self, kb_id: str, vector: Sequence[float], n: int, exclude: Collection[str] = ()
    ) -> list[StoredChunk]:
        return [StoredChunk(c, similarity=0.9 - 0.01 * i) for i, c in enumerate(self.chunks)][:n]

    def get(self, kb_id: str, ids: Sequence[str], with_embeddings: bool) -> list[StoredChunk]:
        return [StoredChunk(c, embedding=[0.5, 0.0]) for c in self.chunks if c.id in ids]


class _Keywords:
    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)

    def search(self, kb_id: str, query: str, n: int, exclude: Collection[str] = ()):
        return [KeywordHit(i, i.split(":")[0], 10.0 - r) for r, i in enumerate(self.ids)]


def _run(store: _Store, keywords: _Keywords, k: int, merge: bool):
    return retrieve(
        query="where is the tower",
        kb_ids=["kb"],
        k=k,
        mode="hybrid",
        min_score=0.2,
        rrf_k=60,
        embedder=_Embedder(),  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        keywords=keywords,  # type: ignore[arg-type]
        active=lambda versions: versions,
        config=PipelineConfig(neighbour_merge=merge),
    )


def test_neighbour_merge_joins_adjacent_slices_and_frees_their_slots() -> None:
    store = _Store(
        [_chunk(4, "The tower stands"), _chunk(5, "on the hill."), _chunk(2, "Far away.")]
    )
    plain = _run(store, _Keywords([]), k=2, merge=False)
    assert [h.chunk.id for h in plain.hits] == ["v1:4", "v1:5"]

    merged = _run(store, _Keywords([]), k=2, merge=True)
    assert [[c.position for c in h.parts] for h in merged.hits] == [[4, 5], [2]]
    assert merged.hits[0].text == "The tower stands\n\non the hill."
    assert merged.hits[0].found_by == ["dense", "neighbour:dense"]
    assert merged.hits[1].found_by == ["dense"]


def test_a_keyword_only_hit_is_named_by_its_stage() -> None:
    store = _Store([_chunk(0, "Dense one.")])
    store.get = lambda kb, ids, with_embeddings: [  # type: ignore[method-assign]
        StoredChunk(_chunk(7, "Keyword one."), embedding=[0.6, 0.0])
    ]
    result = _run(store, _Keywords(["v1:7"]), k=2, merge=True)
    assert {h.chunk.id: h.found_by for h in result.hits} == {
        "v1:0": ["dense"],
        "v1:7": ["keyword"],
    }
    assert all(0 < h.score <= 1 for h in result.hits)


def test_search_api_returns_the_passage_and_the_stages_that_found_it(
    kclient: TestClient, kservices: Services
) -> None:
    kb = _create_base(kclient)
    _ingest(kclient, kservices, kb, "rulebook.md", RULEBOOK.encode())
    hits = _search(kclient, kb, "What do I roll for initiative?", k=2)
    assert hits, "the combat section should be found"
    top = hits[0]
    assert "twenty-sided die" in top["text"] and "Spells" not in top["text"]
    assert top["found_by"] and set(top["found_by"]) <= {"dense", "keyword", "sentence"}
    assert "keyword" in top["found_by"]  # "initiative" is a word of that section
