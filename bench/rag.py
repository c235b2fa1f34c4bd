"""Knowledge benchmark: ingestion throughput, query latency at scale, retrieval quality.

    python bench/rag.py                      # quality + ingestion + latency at 10k and 100k
    python bench/rag.py --sizes 10000        # quicker
    python bench/rag.py --data PATH          # another SQuAD-format file

1. Quality on SQuAD 2.0 dev (five articles, ``bench/data/``, CC BY-SA 4.0): every paragraph is
   a document, every answerable question a query; a query is answered when the paragraph it
   came from is retrieved. recall@1, recall@5 and MRR (over the top 10 documents) for
   (a) the peers' default: MiniLM vectors in Chroma, dense top-k, and (b) Anima's retrieval
   (``KnowledgeService.search``: hybrid BM25 + dense with reciprocal rank fusion and the score
   floor, as replies use it). Both see the same chunks from the same ingestion.
2. Ingestion: the paragraphs go through the real path (upload -> durable job -> chunk ->
   embed -> Chroma + tantivy -> activate); chunks per second end to end.
3. Latency: a knowledge base padded to N chunks (random unit vectors and texts drawn from the
   corpus vocabulary: embedding 100k real chunks would take hours on a laptop CPU), then
   ``search`` p50/p95 over the SQuAD questions, query embedding included.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from container import build_services
from core.principal import SYSTEM
from core.settings import Settings
from knowledge.base import Chunk
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
    settings = Settings(
        data_dir=work / "quality",
        llm_preload=False,
        jobs_poll_interval_s=0.05,
        knowledge_chroma_url=args.chroma_url,
    )
    svc = build_services(settings)
    knowledge = svc.knowledge
    knowledge.embedder.embed_query("warm up")
    kb = knowledge.create_base("squad", principal=SYSTEM).id
    names = [f"p{i:04d}.txt" for i in range(len(paragraphs))]
    started = time.perf_counter()
    jobs = [
        knowledge.add_document(kb, n, p.encode(), principal=SYSTEM).job
        for n, p in zip(names, paragraphs, strict=True)
    ]
    for job in jobs:
        assert (
            job is not None
            and svc.jobs.wait(job.id, timeout=3600, principal=SYSTEM).status == "succeeded"
        )
    ingest_s = time.perf_counter() - started
    chunks = sum(d.chunk_count for d in knowledge.list_documents(kb))

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="SQuAD-format JSON")
    parser.add_argument("--sizes", default="10000,100000", help="chunk counts for latency")
    parser.add_argument("--questions", type=int, default=0, help="sample questions (0: all)")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--chroma-url", default=None, help="a chroma run server instead")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    if args.data is None:
        args.data = next((p for p in DEFAULT_DATA if p.exists()), DEFAULT_DATA[0])
    if not args.data.exists():
        raise SystemExit(f"no dataset at {args.data}; pass --data PATH")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="anima-bench-rag-") as tmp:
        work = Path(tmp)
        if not args.skip_quality:
            q = quality_and_ingest(args, work)
            print(
                f"\nRetrieval quality: {q['questions']} questions over {q['paragraphs']} "
                f"paragraphs ({q['chunks']} chunks), document-level"
            )
            print(f"{'retriever':<44}{'recall@1':>10}{'recall@5':>10}{'MRR@10':>10}")
            for label, key in (
                ("(a) dense MiniLM top-k in Chroma (peers)", "dense"),
                ("(b) Anima: BM25 + dense, RRF, floor", "anima"),
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
