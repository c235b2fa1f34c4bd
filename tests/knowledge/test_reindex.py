"""Re-indexing a base to a new chunking: a background job; the old index serves until it ends.

A base is indexed with 200-token chunks, then the settings ask for 32-token chunks: the base
reports its documents as stale and its owner starts a re-index. While the job is held between
two batches, every search still answers from the old chunks; once it ends, the base holds
exactly what a fresh ingest with the new chunking holds, and the old chunks are gone. A worker
killed mid-way leaves the old index serving; the restarted worker finishes the job.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agents.llm.pool import LLMPool
from container import Services, build_services
from core.principal import ANONYMOUS, SYSTEM
from core.settings import Settings
from knowledge.records import DocumentRecord, IndexVersionRecord
from knowledge.service import KnowledgeService
from tests.core.test_jobs_durability import Workers
from tests.knowledge.test_knowledge_api import BAKERY, LIGHTHOUSE
from tests.waiting import wait_until
from ui.panels.knowledge import handlers as panel

LEDGER = "\n\n".join(f"Ledger entry {i}. {BAKERY}" for i in range(150))
DOCUMENTS = {"lighthouse.txt": LIGHTHOUSE, "ledger.txt": LEDGER}


def _ingest(services: Services, kb: str, documents: dict[str, str]) -> None:
    for name, text in documents.items():
        job = services.knowledge.add_document(kb, name, text.encode(), principal=ANONYMOUS).job
        assert job is not None
        assert services.jobs.wait(job.id, timeout=300, principal=SYSTEM).status == "succeeded"


def _active_versions(services: Services, kb: str) -> dict[str, str]:
    with services.db.session() as s:
        docs = s.query(DocumentRecord).filter_by(kb_id=kb).all()
        return {d.filename: d.active_version for d in docs if d.active_version}


def _chunks(knowledge: KnowledgeService, kb: str) -> dict[str, list[tuple[Any, ...]]]:
    """Each document's searchable chunks as stored in Chroma: (position, page, text, context)."""
    out = {}
    for doc in knowledge.list_documents(kb):
        with knowledge.db.session() as s:
            version = s.get(DocumentRecord, doc.id).active_version  # type: ignore[union-attr]
        ids = [f"{version}:{n}" for n in range(doc.chunk_count)]
        stored = knowledge.store.get(kb, ids, with_embeddings=False)
        out[doc.filename] = sorted(
            (c.chunk.position, c.chunk.page, c.chunk.text, c.chunk.context) for c in stored
        )
    return out


def _use_small_chunks(settings: Settings) -> None:
    settings.knowledge.chunk_tokens = 32
    settings.knowledge.chunk_overlap = 0


def test_searches_use_the_old_index_until_the_reindex_equals_a_fresh_ingest(
    kservices: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    knowledge = kservices.knowledge
    kb = knowledge.create_base("Lore", principal=ANONYMOUS).id
    _ingest(kservices, kb, DOCUMENTS)
    assert knowledge.get_base(kb).stale_documents == 0
    old = _active_versions(kservices, kb)
    old_chunks = knowledge.get_base(kb).chunk_count

    _use_small_chunks(kservices.settings)
    assert knowledge.get_base(kb).stale_documents == 2

    # Hold the job inside its second batch of vectors (a fault-injection point).
    held, release, calls = threading.Event(), threading.Event(), []
    write = knowledge.reindexing.vectors

    def held_vectors(kb_id: str, version: str, start: int, count: int) -> int:
        calls.append(start)
        if len(calls) == 2:
            held.set()
            assert release.wait(120)
        return write(kb_id, version, start, count)

    monkeypatch.setattr(knowledge.reindexing, "vectors", held_vectors)
    job = knowledge.reindex_base(kb, principal=ANONYMOUS)
    assert knowledge.reindex_base(kb, principal=ANONYMOUS).id == job.id  # one job per base
    try:
        assert held.wait(120), "the re-index job never reached its second batch"
        view = kservices.jobs.get(job.id, principal=SYSTEM)
        assert view.status == "running" and 0 < view.progress_done < view.progress_total
        hits = knowledge.search_base(kb, "Ledger entry 7 bakery rye bread", k=5, min_score=-1.0)
        assert hits and {h.chunk_id.split(":")[0] for h in hits} <= set(old.values())
        top = knowledge.search_base(kb, "Who built the lighthouse on Gull Rock?", k=3)
        assert top and top[0].document == "lighthouse.txt"
        assert top[0].chunk_id.split(":")[0] == old["lighthouse.txt"]
        assert knowledge.get_base(kb).chunk_count == old_chunks
        assert {d.status for d in knowledge.list_documents(kb)} == {"updating"}
    finally:
        release.set()
    done = kservices.jobs.wait(job.id, timeout=300, principal=SYSTEM)
    assert done.status == "succeeded", done
    assert done.result == {"kb_id": kb, "documents": 2, "chunks": done.progress_total}

    new = _active_versions(kservices, kb)
    assert set(new) == set(old) and not set(new.values()) & set(old.values())
    assert knowledge.get_base(kb).stale_documents == 0
    assert {d.status for d in knowledge.list_documents(kb)} == {"ready"}
    for version in old.values():  # the old index is purged from both stores
        assert knowledge.store.count(kb, version) == 0
        assert knowledge.keywords.count(kb, version) == 0
    total = knowledge.get_base(kb).chunk_count
    assert total == done.progress_total > old_chunks
    assert knowledge.store.count(kb) == total and knowledge.keywords.count(kb) == total
    hits = knowledge.search_base(kb, "Ledger entry 7 bakery rye bread", k=5)
    assert hits and {h.chunk_id.split(":")[0] for h in hits} <= set(new.values())

    fresh = knowledge.create_base("Fresh", principal=ANONYMOUS).id
    _ingest(kservices, fresh, DOCUMENTS)
    assert _chunks(knowledge, kb) == _chunks(knowledge, fresh)
    assert knowledge.get_base(fresh).chunk_count == total


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_the_reindex_route_starts_the_job(kservices: Services, kclient: TestClient) -> None:
    kb = kservices.knowledge.create_base("Lore", principal=ANONYMOUS).id
    _ingest(kservices, kb, {"lighthouse.txt": LIGHTHOUSE})
    _use_small_chunks(kservices.settings)
    assert kclient.get(f"/api/knowledge-bases/{kb}").json()["stale_documents"] == 1
    opened = panel.open_base(kservices, kb)
    assert opened["docs"] and "1 document(s)" in opened["status"]
    response = kclient.post(f"/api/knowledge-bases/{kb}/reindex")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "knowledge.reindex"
    done = kservices.jobs.wait(job["id"], timeout=120, principal=SYSTEM)
    assert done.status == "succeeded", done
    assert kclient.get(f"/api/knowledge-bases/{kb}").json()["stale_documents"] == 0
    assert kclient.post("/api/knowledge-bases/nope/reindex").status_code == 404
    assert "status" not in panel.open_base(kservices, kb)  # nothing stale: no note

    # The studio's button: nothing left to re-cut, so its job switches nothing.
    started = panel.reindex(kservices, kb, principal=ANONYMOUS)
    assert "nothing to re-index" in started["status"]
    again = kservices.jobs.wait(started["job"], timeout=120, principal=SYSTEM)
    assert again.status == "succeeded" and again.result["documents"] == 0  # type: ignore[index]


@pytest.fixture
def worker_setup(
    knowledge_settings: Settings, llm_pool: LLMPool, embedder: Any, tmp_path: Path
) -> Iterator[tuple[Services, Workers]]:
    settings = knowledge_settings.model_copy(update={"jobs_run_in_app": False})
    services = build_services(settings, llm=llm_pool, embedder=embedder)
    workers = Workers(tmp_path, None)
    workers.env.update(
        {
            "ANIMA_DATA_DIR": str(settings.data_dir),
            "ANIMA_KNOWLEDGE_COLLECTION_PREFIX": settings.knowledge.collection_prefix,
            "ANIMA_KNOWLEDGE_CHUNK_TOKENS": str(settings.knowledge.chunk_tokens),
            "ANIMA_KNOWLEDGE_CHUNK_OVERLAP": str(settings.knowledge.chunk_overlap),
            "ANIMA_JOBS_POLL_INTERVAL_S": "0.05",
        }
    )
    if settings.knowledge.chroma_url:
        workers.env["ANIMA_KNOWLEDGE_CHROMA_URL"] = settings.knowledge.chroma_url
    yield services, workers
    workers.stop_all()
    services.close()


def test_a_killed_reindex_leaves_the_old_index_serving_and_resumes(
    worker_setup: tuple[Services, Workers],
) -> None:
    services, workers = worker_setup
    knowledge = services.knowledge
    kb = knowledge.create_base("Ledger", principal=ANONYMOUS).id
    first = workers.start("kw")
    _ingest(services, kb, {"ledger.txt": LEDGER})
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)
    old = _active_versions(services, kb)["ledger.txt"]
    old_chunks = knowledge.get_base(kb).chunk_count

    _use_small_chunks(services.settings)
    workers.env["ANIMA_KNOWLEDGE_CHUNK_TOKENS"] = "32"
    workers.env["ANIMA_KNOWLEDGE_CHUNK_OVERLAP"] = "0"
    assert knowledge.get_base(kb).stale_documents == 1
    second = workers.start("kw")
    job_id = knowledge.reindex_base(kb, principal=ANONYMOUS).id
    wait_until(
        lambda: services.jobs.get(job_id, principal=SYSTEM).progress_done >= 64,
        timeout=180,
        message="the first batch of the re-index",
    )
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=10)

    view = services.jobs.get(job_id, principal=SYSTEM)
    assert view.status == "running" and view.progress_done < view.progress_total
    with services.db.session() as s:
        pending = s.query(IndexVersionRecord).filter_by(kb_id=kb, status="writing").one()
    assert knowledge.store.count(kb, pending.id) >= 64  # half written, not searchable
    hits = knowledge.search_base(kb, "Ledger entry 7 bakery rye bread", k=5, min_score=-1.0)
    assert hits and {h.chunk_id.split(":")[0] for h in hits} == {old}
    assert knowledge.get_base(kb).chunk_count == old_chunks
    knowledge.close()  # the embedded Chroma folder is the worker's again

    workers.start("kw")  # same executor id: it resumes its own job
    done = services.jobs.wait(job_id, timeout=300, principal=SYSTEM)
    assert done.status == "succeeded", done
    workers.stop_all()

    total = done.progress_total
    assert knowledge.get_base(kb).chunk_count == total > old_chunks
    assert _active_versions(services, kb)["ledger.txt"] == pending.id
    assert knowledge.store.count(kb) == total  # no batch stored twice, the old version purged
    assert knowledge.keywords.count(kb) == total
    assert knowledge.get_base(kb).stale_documents == 0
    hits = knowledge.search_base(kb, "Ledger entry 7 bakery rye bread", k=5)
    assert hits and hits[0].document == "ledger.txt"
