"""Knowledge benchmark: retrieval quality on long documents and on paragraphs, ingestion
throughput, query latency at scale; Anima against the peers' default in one run.

    python bench/rag.py                      # everything, latency at 10k and 100k chunks
    python bench/rag.py --sizes 10000        # quicker
    python bench/rag.py --ablation           # + each pipeline change measured in turn
    python bench/rag.py --tune               # only: stage weights on the SQuAD paragraphs
    python bench/rag.py --data PATH          # another SQuAD-format file

The SQuAD 2.0 dev extract (five articles, CC BY-SA 4.0) is read from ``bench/data/`` or from
``../shared/data/`` beside the repository (or ``--data``); a missing file stops the run with
its path.

1. Long documents: each SQuAD article's paragraphs joined into one document (5 documents, 705
   answerable questions), plus eight pages of the Python language reference that ship with
   CPython (``pydoc_data``, PSF licence) with generated questions (see ``reference_long``).
   A question is answered when a returned chunk covers its gold answer span. Answer-in-top-5,
   recall@1, MRR and characters returned per query for (a) the peers' default: fixed
   1,000-character chunks, MiniLM vectors in an embedded Chroma, dense top 5, and (b) Anima's
   pipeline (``KnowledgeService.search``, as replies use it), top 5. Both index all the long
   documents in one collection / base.
2. SQuAD paragraphs: every paragraph a document, every answerable question a query; answered
   when the paragraph it came from is retrieved. recall@1, recall@5 and MRR (over the top 10
   documents), peers' dense top-k against Anima, on the same chunks.
3. Ingestion: documents go through the real path (upload -> durable job -> chunk -> embed ->
   Chroma + tantivy -> activate); chunks per second end to end.
4. Latency: a knowledge base padded to N chunks (random unit vectors and texts drawn from the
   corpus vocabulary: embedding 100k real chunks would take hours on a laptop CPU), then
   ``search`` p50/p95 over the SQuAD questions, query embedding included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from sqlalchemy import select

from container import build_services
from core.principal import SYSTEM
from core.settings import Settings
from knowledge.base import Chunk
from knowledge.loaders import normalise
from knowledge.records import DocumentRecord, IndexVersionRecord

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = [
    HERE / "data" / "squad-v2-dev-5-articles.json",
    HERE.parent.parent / "shared" / "data" / "squad-v2-dev-5-articles.json",
]


def load_squad(path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    paragraphs, questions = [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            index = len(paragraphs)
            paragraphs.append(paragraph["context"])
            for qa in paragraph["qas"]:
                if not qa.get("is_impossible") and qa.get("answers"):
                    questions.append((qa["question"], index))
    return paragraphs, questions


def doc_ranking(document_names: list[str]) -> list[str]:
    """Chunk hits -> documents in first-seen order (a paragraph may have several chunks)."""
    seen: list[str] = []
    for name in document_names:
        if name not in seen:
            seen.append(name)
    return seen


def metrics(ranks: list[int]) -> dict[str, float]:
    n = len(ranks)
    return {
        "recall@1": sum(r == 1 for r in ranks) / n,
        "recall@5": sum(1 <= r <= 5 for r in ranks) / n,
        "MRR@10": sum(1 / r for r in ranks if r) / n,
    }


def rank_of(ranking: list[str], gold: str) -> int:
    return ranking.index(gold) + 1 if gold in ranking[:10] else 0


def quality_and_ingest(args: argparse.Namespace, work: Path) -> dict:
    paragraphs, questions = load_squad(args.data)
    if args.questions:
        questions = random.Random(0).sample(questions, min(args.questions, len(questions)))
    svc = bench_services(work, "quality", args)
    knowledge = svc.knowledge
    names = [f"p{i:04d}.txt" for i in range(len(paragraphs))]
    kb, ingest_s, chunks = ingest_documents(svc, "squad", dict(zip(names, paragraphs, strict=True)))

    store = knowledge.store
    anima_ranks, dense_ranks = [], []
    for question, gold in questions:
        hits = knowledge.search([kb], question, k=10)
        anima_ranks.append(rank_of(doc_ranking([h.chunk.filename for h in hits.hits]), names[gold]))
        vector = knowledge.embedder.embed_query(question)
        dense = store.query(kb, vector, 30)  # peers: top-k by cosine, nothing else
        dense_ranks.append(rank_of(doc_ranking([s.chunk.filename for s in dense]), names[gold]))
    svc.close()
    return {
        "paragraphs": len(paragraphs),
        "questions": len(questions),
        "chunks": chunks,
        "ingest_s": ingest_s,
        "dense": metrics(dense_ranks),
        "anima": metrics(anima_ranks),
    }


def latency(args: argparse.Namespace, work: Path, size: int) -> dict:
    paragraphs, questions = load_squad(args.data)
    vocabulary = sorted({w for p in paragraphs for w in p.split()})
    rng = random.Random(size)
    settings = Settings(
        data_dir=work / f"latency-{size}",
        llm_preload=False,
        knowledge_chroma_url=args.chroma_url,
    )
    svc = build_services(settings)
    knowledge = svc.knowledge
    dim = knowledge.embedder.dimensions
    kb = knowledge.create_base(f"pad-{size}", principal=SYSTEM).id
    per_doc = 1000
    started = time.perf_counter()
    gen = np.random.default_rng(size)
    for first in range(0, size, per_doc):
        document_id, version = uuid.uuid4().hex, uuid.uuid4().hex
        count = min(per_doc, size - first)
        chunks = [
            Chunk(
                id=f"{version}:{n}",
                kb_id=kb,
                document_id=document_id,
                version=version,
                filename=f"pad{first // per_doc}.txt",
                page=None,
                position=n,
                text=" ".join(rng.choices(vocabulary, k=120)),
            )
            for n in range(count)
        ]
        vectors = gen.standard_normal((count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        knowledge.store.upsert_embeddings(kb, chunks, vectors.tolist())  # type: ignore[attr-defined]
        knowledge.keywords.add(kb, chunks)
        with svc.db.session() as s:
            s.add(
                DocumentRecord(
                    id=document_id,
                    kb_id=kb,
                    filename=chunks[0].filename,
                    media_type="text/plain",
                    content_hash=version,
                    size_bytes=0,
                    status="ready",
                    active_version=version,
                    chunk_count=count,
                )
            )
            s.add(
                IndexVersionRecord(
                    id=version,
                    kb_id=kb,
                    document_id=document_id,
                    filename=chunks[0].filename,
                    media_type="text/plain",
                    content_hash=version,
                    size_bytes=0,
                    status="active",
                    chunk_count=count,
                )
            )
    build_s = time.perf_counter() - started
    sample = [q for q, _ in rng.sample(questions, min(args.latency_queries, len(questions)))]
    for q in sample[:5]:
        knowledge.search([kb], q, k=5)  # warm caches
    totals, embeds = [], []
    for q in sample:
        t0 = time.perf_counter()
        knowledge.embedder.embed_query(q)
        t1 = time.perf_counter()
        knowledge.search([kb], q, k=5)
        t2 = time.perf_counter()
        embeds.append((t1 - t0) * 1000)
        totals.append((t2 - t1) * 1000)
    svc.close()
    return {
        "size": size,
        "build_s": build_s,
        "p50": statistics.median(totals),
        "p95": float(np.percentile(totals, 95)),
        "embed_p50": statistics.median(embeds),
    }


# ----- long documents -------------------------------------------------------------------------
PEER_CHUNK_CHARS = 1000
TOP = 5
# The Python language reference pages that ship with every CPython (``pydoc_data``, PSF
# licence): long technical prose with reST headings, like a creator's rulebook or manual.
REFERENCE_TOPICS = (
    "compound",
    "types",
    "formatstrings",
    "typesseq",
    "attribute-access",
    "customization",
    "typesmapping",
    "assignment",
)
REFERENCE_QUESTIONS_PER_DOC = 25
_SENTENCE = re.compile(r"[^.!?]+[.!?](?=\s|$)")
_ALPHA = re.compile(r"^[A-Za-z][a-z]+$")
_STOP_TEXT = (
    "about above after again against because before being below between could during "
    "further having other should their there these those through under until where which "
    "while would itself values object objects method methods python return returns"
)
STOP = frozenset(_STOP_TEXT.split())


@dataclass
class LongQuestion:
    doc: str  # file name
    question: str
    start: int  # answer span in the document as indexed (normalised text)
    end: int


@dataclass
class LongCorpus:
    name: str
    documents: dict[str, str]  # file name -> text as indexed
    questions: list[LongQuestion]


def squad_long(path: Path) -> LongCorpus:
    """Each SQuAD article's paragraphs joined (blank line between) into one document; a
    question is answered when a returned chunk covers its gold answer span."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    documents, questions = {}, []
    for article in data:
        name = f"{article['title']}.txt"
        doc = normalise("\n\n".join(p["context"] for p in article["paragraphs"]))
        documents[name] = doc
        cursor = 0
        for paragraph in article["paragraphs"]:
            text = normalise(paragraph["context"])
            at = doc.find(text, cursor)
            if at < 0:
                raise SystemExit(f"{name}: a paragraph is not in the joined document")
            cursor = at + len(text)
            for qa in paragraph["qas"]:
                if qa.get("is_impossible") or not qa.get("answers"):
                    continue
                answer = qa["answers"][0]
                found = [m.start() for m in re.finditer(re.escape(answer["text"]), text)]
                if not found:
                    continue
                local = min(found, key=lambda s: abs(s - answer["answer_start"]))
                questions.append(
                    LongQuestion(name, qa["question"], at + local, at + local + len(answer["text"]))
                )
    return LongCorpus("SQuAD articles joined", documents, questions)


def reference_long(seed: int = 0) -> LongCorpus:
    """The Python language reference pages with questions generated from their own text.

    No package we found ships long public-domain text *with* questions, so questions are built
    the same way for every retriever: a prose sentence (10-35 words) loses its longest
    uncommon word (the answer) and a quarter of its other words, at random (seeded), the rest
    in their order. Answered = a returned chunk covers that word in that sentence. Lexical
    overlap is higher than in SQuAD's human questions, so this corpus rewards keyword search
    more; the SQuAD set is the main measurement."""
    from pydoc_data.topics import topics

    rng = random.Random(seed)
    documents, questions = {}, []
    for topic in REFERENCE_TOPICS:
        name = f"python-reference-{topic}.txt"
        doc = normalise(topics[topic])
        documents[name] = doc
        candidates = []
        for m in _SENTENCE.finditer(doc):
            sentence = m.group(0)
            words = sentence.split()
            if not 10 <= len(words) <= 35 or "::=" in sentence or ">>>" in sentence:
                continue
            keys = re.findall(r"\b[A-Za-z]{6,}\b", sentence)
            keys = [w for w in keys if _ALPHA.match(w) and w.lower() not in STOP]
            if not keys:
                continue
            candidates.append((m.start(), sentence, max(keys, key=len)))
        for start, sentence, key in rng.sample(
            candidates, min(REFERENCE_QUESTIONS_PER_DOC, len(candidates))
        ):
            offset = re.search(rf"\b{key}\b", sentence)
            assert offset is not None
            kept = [
                w
                for w in sentence.replace("\n", " ").split()
                if key not in w and (rng.random() > 0.25)
            ]
            a = start + offset.start()
            questions.append(LongQuestion(name, " ".join(kept), a, a + len(key)))
    return LongCorpus("Python reference, generated", documents, questions)


def spans_of(doc: str, texts: list[str]) -> list[tuple[int, int]]:
    """Where returned texts lie in the document (chunk texts are pieces of it)."""
    out = []
    for text in texts:
        at = doc.find(text)
        if at < 0:
            at = doc.find(text[:120])
        if at >= 0:
            out.append((at, at + len(text)))
    return out


def long_metrics(ranks: list[int], chars: list[int]) -> dict[str, float]:
    n = max(1, len(ranks))
    return {
        "top5": sum(1 <= r <= TOP for r in ranks) / n,
        "recall@1": sum(r == 1 for r in ranks) / n,
        "MRR": sum(1 / r for r in ranks if r) / n,
        "chars": statistics.mean(chars) if chars else 0.0,
    }


def first_cover(question: LongQuestion, hits: list[tuple[str, list[str]]], doc: str) -> int:
    """1-based rank of the first hit (file name, texts) that covers the answer span."""
    for rank, (name, texts) in enumerate(hits, start=1):
        if name != question.doc:
            continue
        for s, e in spans_of(doc, texts):
            if s <= question.start and question.end <= e:
                return rank
    return 0


def peers_default(corpora: list[LongCorpus], embedder, work: Path) -> list[dict[str, float]]:
    """What most RAG tutorials ship: fixed 1,000-character windows, MiniLM vectors in an
    embedded Chroma, dense top 5."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(
        path=str(work / "peers"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.get_or_create_collection(
        f"peers-{uuid.uuid4().hex[:8]}", configuration={"hnsw": {"space": "cosine"}}
    )
    ids, texts, metas = [], [], []
    for name, doc in ((n, d) for c in corpora for n, d in c.documents.items()):
        for n, start in enumerate(range(0, len(doc), PEER_CHUNK_CHARS)):
            ids.append(f"{name}:{n}")
            texts.append(doc[start : start + PEER_CHUNK_CHARS])
            metas.append({"doc": name, "start": start})
    started = time.perf_counter()
    vectors = embedder.embed_documents(texts)
    print(
        f"  (the embedding model alone: {len(texts) / (time.perf_counter() - started):.1f} "
        f"chunks/s on the peers' {len(texts)} chunks of {PEER_CHUNK_CHARS} characters)",
        file=sys.stderr,
    )
    for b in range(0, len(ids), 512):
        collection.add(
            ids=ids[b : b + 512],
            documents=texts[b : b + 512],
            metadatas=metas[b : b + 512],
            embeddings=vectors[b : b + 512],
        )
    out = []
    for corpus in corpora:
        out.append(_peer_queries(corpus, collection, embedder))
    client.close()
    return out


def _peer_queries(corpus: LongCorpus, collection, embedder) -> dict[str, float]:
    ranks, chars = [], []
    for q in corpus.questions:
        r = collection.query(
            query_embeddings=[embedder.embed_query(q.question)],
            n_results=TOP,
            include=["metadatas", "documents"],
        )
        hits, total = [], 0
        for meta, text in zip(r["metadatas"][0], r["documents"][0], strict=True):
            s = int(meta["start"])
            hits.append((meta["doc"], s, s + len(text)))
            total += len(text)
        rank = next(
            (
                i
                for i, (d, s, e) in enumerate(hits, 1)
                if d == q.doc and s <= q.start and q.end <= e
            ),
            0,
        )
        ranks.append(rank)
        chars.append(total)
    return long_metrics(ranks, chars)


def anima_long(corpus: LongCorpus, svc, kb: str) -> dict[str, float]:
    knowledge = svc.knowledge
    ranks, chars = [], []
    for q in corpus.questions:
        result = knowledge.search([kb], q.question, k=TOP)
        hits = [(h.chunk.filename, hit_texts(h)) for h in result.hits]
        ranks.append(first_cover(q, hits, corpus.documents[q.doc]))
        chars.append(sum(len(t) for _, texts in hits for t in texts))
    return long_metrics(ranks, chars)


def hit_texts(hit) -> list[str]:
    parts = getattr(hit, "parts", None)
    return [c.text for c in parts] if parts else [hit.chunk.text]


def bench_services(work: Path, name: str, args: argparse.Namespace, warm: bool = True):
    """Services on a data folder of their own under ``work``; the embedder loaded if ``warm``."""
    settings = Settings(
        data_dir=work / name,
        llm_preload=False,
        jobs_poll_interval_s=0.05,
        knowledge_chroma_url=args.chroma_url,
        knowledge_embedding_quantize=getattr(args, "quantize", False),
    )
    svc = build_services(settings)
    if warm:
        svc.knowledge.embedder.embed_query("warm up")
    return svc


def ingest_documents(svc, base: str, documents: dict[str, str]) -> tuple[str, float, int]:
    """A new base holding ``documents`` (name -> text), every ingest job waited for.

    Returns the base id, the seconds from the first upload to the last job's end, and chunks.
    """
    knowledge = svc.knowledge
    kb = knowledge.create_base(base, principal=SYSTEM).id
    started = time.perf_counter()
    jobs = [
        knowledge.add_document(kb, name, text.encode(), principal=SYSTEM).job
        for name, text in documents.items()
    ]
    for job in jobs:
        assert (
            job is not None
            and svc.jobs.wait(job.id, timeout=3600, principal=SYSTEM).status == "succeeded"
        )
    seconds = time.perf_counter() - started
    chunks = sum(d.chunk_count for d in knowledge.list_documents(kb))
    return kb, seconds, chunks


def ingest_long(svc, corpora: list[LongCorpus]) -> tuple[str, float, int]:
    return ingest_documents(svc, "long", {n: d for c in corpora for n, d in c.documents.items()})


def long_documents(args: argparse.Namespace, work: Path) -> dict:
    corpora = [squad_long(args.data), reference_long()]
    svc = bench_services(work, "long", args)
    kb, seconds, chunks = ingest_long(svc, corpora)
    peer_embedder = svc.knowledge.embedder
    if args.quantize:  # the peers' default embeds at full precision
        from knowledge.sentence_transformer_embedder import SentenceTransformerEmbedder

        peer_embedder = SentenceTransformerEmbedder(peer_embedder.model_id)
    peers = peers_default(corpora, peer_embedder, work)
    out = {"ingest_s": seconds, "chunks": chunks, "corpora": []}
    for corpus, peer in zip(corpora, peers, strict=True):
        out["corpora"].append(
            {
                "name": corpus.name,
                "documents": len(corpus.documents),
                "questions": len(corpus.questions),
                "characters": sum(len(d) for d in corpus.documents.values()),
                "peers": peer,
                "anima": anima_long(corpus, svc, kb),
            }
        )
    svc.close()
    return out


# ----- one change at a time -------------------------------------------------------------------
def _ingest_paragraphs(svc, paragraphs: list[str]) -> tuple[str, list[str]]:
    names = [f"p{i:04d}.txt" for i in range(len(paragraphs))]
    kb, _, _ = ingest_documents(svc, "squad", dict(zip(names, paragraphs, strict=True)))
    return kb, names


def _paragraph_top5(svc, kb: str, names: list[str], questions) -> float:
    ranks = []
    for question, gold in questions:
        hits = svc.knowledge.search([kb], question, k=10)
        ranks.append(rank_of(doc_ranking([h.chunk.filename for h in hits.hits]), names[gold]))
    return metrics(ranks)["recall@5"]


def _sample(rng: random.Random, items: list, n: int) -> list:
    return items if not n or n >= len(items) else rng.sample(items, n)


def ablation(args: argparse.Namespace, work: Path) -> list[tuple[str, list[dict], float | None]]:
    """Each change of the pipeline added to the previous ones, measured on both sets."""
    import knowledge.chunking as chunking
    import knowledge.retrieval as retrieval
    import knowledge.tantivy_index as tantivy_index
    from knowledge.retrieval import DENSE, KEYWORD, SENTENCE, PipelineConfig

    rng = random.Random(1)
    corpora = [
        dataclasses.replace(c, questions=_sample(rng, c.questions, args.ablation_questions))
        for c in (squad_long(args.data), reference_long())
    ]
    paragraphs, questions = load_squad(args.data)
    questions = _sample(rng, questions, args.ablation_questions)
    saved = (chunking.STRUCTURE_AWARE, chunking.EMBED_CONTEXT, retrieval.DEFAULT)
    saved_stop = tantivy_index.STOP_WORDS
    today = PipelineConfig(weights=((DENSE, 1.0), (KEYWORD, 1.0)), neighbour_merge=False)
    sentence = PipelineConfig(
        weights=((DENSE, 1.0), (KEYWORD, 1.0), (SENTENCE, 0.5)), neighbour_merge=False
    )
    steps = [
        ("today: token windows, BM25 + dense", (False, False), False, today),
        ("+ structure-aware chunks", (True, False), False, today),
        ("+ title and section path embedded", (True, True), False, today),
        ("+ stop words dropped from keyword queries", (True, True), True, today),
        ("+ sentence stage (weight 0.5)", (True, True), True, sentence),
        (
            "+ neighbour merge",
            (True, True),
            True,
            dataclasses.replace(sentence, neighbour_merge=True),
        ),
        ("+ frozen tuned weights (the default)", (True, True), True, saved[2]),
        ("default without title and section path", (True, False), True, saved[2]),
    ]
    if args.ablation_context:
        steps = steps[-2:]
    out = []
    bases: dict[tuple[bool, bool], tuple] = {}
    svc = bench_services(work, "ablation", args)
    try:
        if not args.ablation_context:
            peers = peers_default(corpora, svc.knowledge.embedder, work)
            out.append(("peers' default (reference)", peers, None))
        for label, ingest, stop, config in steps:
            if ingest not in bases:
                chunking.STRUCTURE_AWARE, chunking.EMBED_CONTEXT = ingest
                long_kb, _, _ = ingest_long(svc, corpora)
                bases[ingest] = (long_kb, *_ingest_paragraphs(svc, paragraphs))
            long_kb, para_kb, names = bases[ingest]
            tantivy_index.STOP_WORDS = saved_stop if stop else frozenset()
            retrieval.DEFAULT = config
            long = [anima_long(c, svc, long_kb) for c in corpora]
            out.append((label, long, _paragraph_top5(svc, para_kb, names, questions)))
            print(f"  measured: {label}", file=sys.stderr)
    finally:
        chunking.STRUCTURE_AWARE, chunking.EMBED_CONTEXT, retrieval.DEFAULT = saved
        tantivy_index.STOP_WORDS = saved_stop
        svc.close()
    return out


def print_ablation(rows: list[tuple[str, list[dict], float | None]]) -> None:
    print(
        "\nOne change at a time (each row adds its change to the rows above; a sample of "
        "the questions, see --ablation-questions; chars/q on the SQuAD long documents)"
    )
    print(
        f"{'change':<44}{'long top5':>10}{'long R@1':>9}{'ref top5':>9}{'ref R@1':>8}"
        f"{'para top5':>10}{'chars/q':>8}"
    )
    for label, long, para in rows:
        print(
            f"{label:<44}{long[0]['top5']:>10.3f}{long[0]['recall@1']:>9.3f}"
            f"{long[1]['top5']:>9.3f}{long[1]['recall@1']:>8.3f}"
            f"{'-' if para is None else f'{para:.3f}':>10}{long[0]['chars']:>8.0f}"
        )


def tune(args: argparse.Namespace, work: Path) -> None:
    """Grid of stage weights on the SQuAD paragraph set only (what the frozen weights came
    from); stage lists are fetched once per question and fused offline."""
    from knowledge.retrieval import rrf

    paragraphs, questions = load_squad(args.data)
    svc = bench_services(work, "tune", args, warm=False)
    knowledge = svc.knowledge
    kb, names = _ingest_paragraphs(svc, paragraphs)
    lists = []
    for question, gold in questions:
        vector = knowledge.embedder.embed_query(question)
        dense = [s.chunk.id for s in knowledge.store.query(kb, vector, 20)]
        keyword = [h.chunk_id for h in knowledge.keywords.search(kb, question, 20)]
        sentence = [h.chunk_id for h in knowledge.keywords.search_sentences(kb, question, 20)]
        lists.append(([dense, keyword, sentence], gold))
    with svc.db.session() as session:
        rows = session.scalars(select(IndexVersionRecord).where(IndexVersionRecord.kb_id == kb))
        file_of = {v.id: v.filename for v in rows}
    rrf_k = svc.settings.knowledge.rrf_k
    svc.close()
    print(f"\n{'dense':>6}{'keyword':>8}{'sentence':>9}{'R@1':>7}{'R@5':>7}{'MRR':>7}")
    for wk in (0.5, 0.75, 1.0, 1.5):
        for ws in (0.0, 0.25, 0.5, 1.0):
            ranks = []
            for stage_lists, gold in lists:
                fused = rrf(stage_lists, rrf_k, [1.0, wk, ws])
                order = sorted(fused, key=lambda i: fused[i], reverse=True)
                docs = doc_ranking([file_of[i.split(":")[0]] for i in order])
                ranks.append(rank_of(docs, names[gold]))
            m = metrics(ranks)
            print(
                f"{1.0:>6}{wk:>8}{ws:>9}{m['recall@1']:>7.3f}{m['recall@5']:>7.3f}{m['MRR@10']:>7.3f}"
            )


def print_long(r: dict) -> None:
    print(f"\nLong documents: answer-in-top-{TOP} = a returned chunk covers the gold answer span")
    head = f"{'corpus':<40}{'retriever':<22}{'top5':>7}{'R@1':>7}{'MRR':>7}{'chars/q':>9}"
    print(head)
    for c in r["corpora"]:
        label = f"{c['name'][:28]} ({c['documents']}d/{c['questions']}q)"
        for who, key in (("peers' default", "peers"), ("Anima", "anima")):
            m = c[key]
            print(
                f"{label:<40}{who:<22}{m['top5']:>7.3f}{m['recall@1']:>7.3f}{m['MRR']:>7.3f}"
                f"{m['chars']:>9.0f}"
            )
        gain = (c["anima"]["top5"] - c["peers"]["top5"]) * 100
        ratio = c["anima"]["chars"] / max(1.0, c["peers"]["chars"])
        print(f"{'':<40}{'Anima - peers':<22}{gain:>+6.1f} points, {ratio:.2f}x the characters")
    print(
        f"Ingestion of the long documents: {r['chunks']} chunks in {r['ingest_s']:.1f} s = "
        f"{r['chunks'] / r['ingest_s']:.1f} chunks/s"
    )


# ----- where ingest time goes, and what makes the embedder faster --------------------------------
AB_GROUP = 64  # chunks per ingest step (knowledge/jobs.py BATCH)


def _long_chunk_texts(embedder, corpora: list[LongCorpus], limit: int) -> list[str]:
    """What the ingest job embeds for the long documents (chunk text with its context)."""
    from knowledge.chunking import chunk_records
    from knowledge.loaders import Section

    texts: list[str] = []
    for corpus in corpora:
        for name, doc in corpus.documents.items():
            for c in chunk_records([Section(None, doc)], name, embedder.count_tokens, 200, 40):
                texts.append(f"{c['context']}\n{c['text']}" if c.get("context") else c["text"])
    return texts[:limit]


def embedder_ab(args: argparse.Namespace, work: Path) -> None:
    """Each embedder change against today's settings, rotated, ``--ab-reps`` times, on the
    same long-document chunks embedded in ingest-sized groups: medians of chunks/s, the ratio
    to the baseline measured in the same round, and how far the vectors move (cosine to the
    baseline's). Then the share of an ingest step spent writing to Chroma and tantivy."""
    import torch

    from knowledge.sentence_transformer_embedder import SentenceTransformerEmbedder

    model = "bundled:all-minilm-l6-v2"
    base = SentenceTransformerEmbedder(model)
    texts = _long_chunk_texts(base, [squad_long(args.data), reference_long()], args.ab_chunks)
    tokens = [base.count_tokens(t) for t in texts]
    by_length = [t for _, t in sorted(zip(tokens, texts, strict=True), key=lambda p: p[0])]
    threads = torch.get_num_threads()
    short = SentenceTransformerEmbedder(model)
    short.load().max_seq_length = 128
    b16 = SentenceTransformerEmbedder(model, batch_size=16)
    b64 = SentenceTransformerEmbedder(model, batch_size=64)
    int8 = SentenceTransformerEmbedder(model, quantize=True)
    for warm in (b16, b64, int8, short) if args.ab_threads else (b64, int8, short):
        warm.embed_query("warm up")

    def grouped(embedder, items: list[str], group: int = AB_GROUP):
        out: list[list[float]] = []
        for start in range(0, len(items), group):
            out.extend(embedder.embed_documents(items[start : start + group]))
        return out

    def one_thread():
        torch.set_num_threads(1)
        try:
            return grouped(base, texts)
        finally:
            torch.set_num_threads(threads)

    variants = {
        "baseline (batch 32, fp32, 64-chunk steps)": lambda: grouped(base, texts),
        "batch 64": lambda: grouped(b64, texts),
        f"steps of {len(texts)} chunks": lambda: grouped(base, texts, len(texts)),
        "length-sorted before steps": lambda: grouped(base, by_length),
        "int8 dynamic quantisation": lambda: grouped(int8, texts),
        "max sequence 128 tokens": lambda: grouped(short, texts),
    }
    if args.ab_threads:  # meaningful only on an otherwise idle machine
        variants[f"1 torch thread (of {threads})"] = one_thread
        variants["batch 16"] = lambda: grouped(b16, texts)
    reference = np.array(base.embed_documents(texts))
    order = {t: i for i, t in enumerate(texts)}
    rates: dict[str, list[float]] = {k: [] for k in variants}
    ratios: dict[str, list[float]] = {k: [] for k in variants}
    moved: dict[str, float] = {}
    loads = []
    for rep in range(args.ab_reps):
        names = list(variants)
        names = names[rep % len(names) :] + names[: rep % len(names)]
        loads.append(os.getloadavg()[0])
        this: dict[str, float] = {}
        for name in names:
            started = time.perf_counter()
            vectors = variants[name]()
            this[name] = len(texts) / (time.perf_counter() - started)
            if name not in moved:
                got = np.array(vectors)
                if name.startswith("length-sorted"):
                    got = got[np.argsort([order[t] for t in by_length])]
                moved[name] = float(np.mean(np.sum(got * reference, axis=1)))
        for name in names:
            rates[name].append(this[name])
            ratios[name].append(this[name] / this[next(iter(variants))])
        print(f"round {rep + 1}: " + ", ".join(f"{r:.1f}" for r in this.values()), flush=True)
    print(
        f"\nEmbedder A/B: {len(texts)} long-document chunks (median "
        f"{statistics.median(tokens)} tokens), {args.ab_reps} rounds, load "
        + ", ".join(f"{x:.1f}" for x in loads)
    )
    print(f"{'change':<44}{'chunks/s':>10}{'ratio':>8}{'cos to fp32':>13}")
    for name in variants:
        print(
            f"{name:<44}{statistics.median(rates[name]):>10.1f}"
            f"{statistics.median(ratios[name]):>8.2f}{moved[name]:>13.4f}"
        )
    _write_share(base, texts, work)


def _write_share(embedder, texts: list[str], work: Path) -> None:
    """One ingest step's parts timed apart: embedding, Chroma upsert, tantivy add."""
    from knowledge.chroma_embedded import EmbeddedChromaStore
    from knowledge.tantivy_index import TantivyKeywordIndex

    store = EmbeddedChromaStore(work / "ab-chroma", embedder, "ab")
    keywords = TantivyKeywordIndex(work / "ab-keyword")
    chunks = [
        Chunk(f"v:{n}", "ab", "d", "v", "d.txt", None, n, text) for n, text in enumerate(texts)
    ]
    started = time.perf_counter()
    vectors = []
    for start in range(0, len(texts), AB_GROUP):
        vectors.extend(embedder.embed_documents(texts[start : start + AB_GROUP]))
    embed_s = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, len(chunks), AB_GROUP):
        part = slice(start, start + AB_GROUP)
        store.upsert_embeddings("ab", chunks[part], vectors[part])
    chroma_s = time.perf_counter() - started
    started = time.perf_counter()
    keywords.add("ab", chunks)
    tantivy_s = time.perf_counter() - started
    total = embed_s + chroma_s + tantivy_s
    print(
        f"\nOne ingest's parts ({len(chunks)} chunks): embedding {embed_s / total:.0%}, Chroma "
        f"upsert {chroma_s / total:.0%}, tantivy {tantivy_s / total:.0%} of {total:.1f} s"
    )
    store.close()
    keywords.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="SQuAD-format JSON")
    parser.add_argument("--sizes", default="10000,100000", help="chunk counts for latency")
    parser.add_argument("--questions", type=int, default=0, help="sample questions (0: all)")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--chroma-url", default=None, help="a chroma run server instead")
    parser.add_argument("--skip-quality", action="store_true", help="no SQuAD paragraph set")
    parser.add_argument("--skip-long", action="store_true", help="no long-document set")
    parser.add_argument(
        "--ablation", action="store_true", help="also measure each pipeline change in turn"
    )
    parser.add_argument(
        "--ablation-context",
        action="store_true",
        help="ablation of the title/section context only (two ingests)",
    )
    parser.add_argument(
        "--ablation-questions", type=int, default=250, help="questions per set (0: all)"
    )
    parser.add_argument(
        "--tune", action="store_true", help="only: stage weights on the SQuAD paragraph set"
    )
    parser.add_argument(
        "--embedder-ab", action="store_true", help="only: embedder speed changes, A/B"
    )
    parser.add_argument("--ab-chunks", type=int, default=192, help="chunks per A/B round")
    parser.add_argument("--ab-reps", type=int, default=3, help="A/B rounds")
    parser.add_argument(
        "--ab-threads", action="store_true", help="A/B also: 1 torch thread, batch 16"
    )
    parser.add_argument("--quantize", action="store_true", help="Anima embeds with the int8 model")
    args = parser.parse_args()
    if args.data is None:
        args.data = next((p for p in DEFAULT_DATA if p.exists()), DEFAULT_DATA[0])
    if not args.data.exists():
        raise SystemExit(f"no dataset at {args.data}; pass --data PATH")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="anima-bench-rag-") as tmp:
        work = Path(tmp)
        if args.tune:
            tune(args, work)
            return
        if args.embedder_ab:
            embedder_ab(args, work)
            return
        if args.ablation:
            print_ablation(ablation(args, work))
        if not args.skip_long:
            print_long(long_documents(args, work))
        if not args.skip_quality:
            q = quality_and_ingest(args, work)
            print(
                f"\nRetrieval quality: {q['questions']} questions over {q['paragraphs']} "
                f"paragraphs ({q['chunks']} chunks), document-level"
            )
            print(f"{'retriever':<44}{'recall@1':>10}{'recall@5':>10}{'MRR@10':>10}")
            for label, key in (
                ("(a) dense MiniLM top-k in Chroma (peers)", "dense"),
                ("(b) Anima: dense + BM25 + sentences, RRF", "anima"),
            ):
                m = q[key]
                print(
                    f"{label:<44}{m['recall@1']:>10.3f}{m['recall@5']:>10.3f}{m['MRR@10']:>10.3f}"
                )
            print(
                f"\nIngestion: {q['chunks']} chunks from {q['paragraphs']} documents in "
                f"{q['ingest_s']:.1f} s = {q['chunks'] / q['ingest_s']:.1f} chunks/s "
                "(upload, durable job, chunk, embed, Chroma, tantivy, activate)"
            )
        print(f"\n{'chunks':>8}{'build s':>10}{'p50 ms':>10}{'p95 ms':>10}{'embed p50 ms':>14}")
        for size in [int(s) for s in args.sizes.split(",") if s]:
            r = latency(args, work, size)
            print(
                f"{r['size']:>8}{r['build_s']:>10.1f}{r['p50']:>10.1f}{r['p95']:>10.1f}"
                f"{r['embed_p50']:>14.1f}"
            )
    print(
        f"\nload average at start: {load:.2f} ({os.cpu_count()} cores); latency = "
        "KnowledgeService.search end to end, hybrid, k=5, query embedding included"
    )


if __name__ == "__main__":
    main()
