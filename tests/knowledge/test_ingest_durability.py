"""Kill -9 in the middle of an ingest: nothing half-written is searchable; a restart finishes it.

The ingest runs in a real ``python app.py worker`` subprocess (the test process only uploads,
as the web process of a scaled-out install does), against the embedded Chroma and against a
``chroma run`` server. The worker is killed after the first batch of chunks reached Chroma.
The test then looks at the stores directly: the chunks are there but no search returns them.
The same worker id restarts, resumes the job, and the document ends with exactly its chunks
(re-run batches overwrite, never duplicate).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.llm.pool import LLMPool
from container import Services, build_services
from core.principal import ANONYMOUS, SYSTEM
from core.settings import Settings
from knowledge.records import IndexVersionRecord
from tests.core.test_jobs_durability import Workers
from tests.knowledge.test_knowledge_api import BAKERY, LIGHTHOUSE
from tests.waiting import wait_until

ENTRIES = 150  # about 150 chunks of at most 32 tokens: three batches of 64


@pytest.fixture
def setup(
    knowledge_settings: Settings, llm_pool: LLMPool, embedder: Any, tmp_path: Path
) -> Iterator[tuple[Services, Workers]]:
    settings = knowledge_settings.model_copy(update={"jobs_run_in_app": False})
    services = build_services(settings, llm=llm_pool, embedder=embedder)
    workers = Workers(tmp_path, None)
    workers.env.update(
        {
            "ANIMA_DATA_DIR": str(settings.data_dir),
            "ANIMA_KNOWLEDGE_COLLECTION_PREFIX": settings.knowledge.collection_prefix,
            "ANIMA_KNOWLEDGE_CHUNK_TOKENS": "32",
            "ANIMA_KNOWLEDGE_CHUNK_OVERLAP": "0",
            "ANIMA_JOBS_POLL_INTERVAL_S": "0.05",
        }
    )
    if settings.knowledge.chroma_url:
        workers.env["ANIMA_KNOWLEDGE_CHROMA_URL"] = settings.knowledge.chroma_url
    yield services, workers
    workers.stop_all()
    services.close()


def test_a_killed_ingest_is_invisible_then_finished_by_the_restarted_worker(
    setup: tuple[Services, Workers],
) -> None:
    services, workers = setup
    knowledge = services.knowledge
    kb = knowledge.create_base("Lore", principal=ANONYMOUS).id
    first = workers.start("kw")
    kept = knowledge.add_document(kb, "lighthouse.txt", LIGHTHOUSE.encode(), principal=ANONYMOUS)
    assert services.jobs.wait(kept.job.id, timeout=120, principal=SYSTEM).status == "succeeded"  # type: ignore[union-attr]

    text = "\n\n".join(f"Ledger entry {i}. {BAKERY}" for i in range(ENTRIES))
    upload = knowledge.add_document(kb, "ledger.txt", text.encode(), principal=ANONYMOUS)
    job_id = upload.job.id  # type: ignore[union-attr]
    wait_until(
        lambda: services.jobs.get(job_id, principal=SYSTEM).progress_done >= 64,
        timeout=180,
        message="the first batch",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    view = services.jobs.get(job_id, principal=SYSTEM)
    assert view.status == "running" and view.progress_done < view.progress_total
    doc = knowledge.get_document(kb, upload.document.id)
    assert doc.status == "indexing" and doc.chunk_count == 0
    # Part of the document is in Chroma, none of it is searchable.
    with services.db.session() as s:
        pending = s.query(IndexVersionRecord).filter_by(document_id=doc.id).one()
    assert pending.status == "writing"
    assert knowledge.store.count(kb, pending.id) >= 64
    assert knowledge.keywords.count(kb, pending.id) == 0
    # No floor: every chunk Chroma returns counts unless it is of an unfinished version.
    hits = knowledge.search_base(kb, "Ledger entry bakery rye bread", k=10, min_score=-1.0)
    assert hits and {h.document for h in hits} == {"lighthouse.txt"}
    assert knowledge.search_base(kb, "Who built the lighthouse?")[0].document == "lighthouse.txt"
    knowledge.close()  # the embedded Chroma folder is the worker's again

    workers.start("kw")  # same executor id: it resumes its own job
    done = services.jobs.wait(job_id, timeout=300, principal=SYSTEM)
    assert done.status == "succeeded", done
    workers.stop_all()

    doc = knowledge.get_document(kb, upload.document.id)
    total = done.result["chunks"]  # type: ignore[index]
    assert doc.status == "ready" and doc.chunk_count == total and total > 128
    assert (done.progress_done, done.progress_total) == (total, total)
    kept_chunks = knowledge.get_document(kb, kept.document.id).chunk_count
    assert knowledge.store.count(kb) == total + kept_chunks  # exactly: no batch stored twice
    assert knowledge.keywords.count(kb) == total + kept_chunks
    hits = knowledge.search_base(kb, "Ledger entry 7 bakery rye bread", k=5)
    assert hits[0].document == "ledger.txt"
