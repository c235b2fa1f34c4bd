"""Knowledge bases through the REST API, on the embedded Chroma and on a ``chroma run`` server.

Real components throughout: the bundled MiniLM embedder, Chroma, tantivy and the durable job
runner. Each test checks what a creator relies on: what was uploaded is found with its page,
re-uploads add nothing, a changed file replaces its chunks, deletes are immediate, a base
serves several agents, and bad files are refused by name without touching what is indexed.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agents.llm.pool import LLMPool
from container import Services, build_services
from core.principal import SYSTEM
from core.settings import Settings
from tests.knowledge.documents import (
    PNG_BYTES,
    make_corrupt_pdf,
    make_docx,
    make_encrypted_pdf,
    make_pdf,
    make_scanned_pdf,
)
from tests.waiting import wait_until

LIGHTHOUSE = (
    "The lighthouse on Gull Rock was built in 1874 by the engineer Mara Quell. Its lamp burns "
    "whale oil and can be seen from forty kilometres away on a clear night."
)
BAKERY = "The bakery on Fennel Street sells rye bread on Tuesdays and cinnamon buns on Sundays."


def _create_base(client: TestClient, name: str = "Lore") -> str:
    response = client.post("/api/knowledge-bases", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _upload(client: TestClient, kb_id: str, name: str, content: bytes) -> Any:
    return client.post(f"/api/knowledge-bases/{kb_id}/documents", files={"file": (name, content)})


def _ingest(client: TestClient, services: Services, kb_id: str, name: str, content: bytes) -> dict:
    response = _upload(client, kb_id, name, content)
    assert response.status_code == 202, response.text
    body = response.json()
    job = services.jobs.wait(body["job"]["id"], timeout=120, principal=SYSTEM)
    assert job.status == "succeeded", job
    return client.get(f"/api/knowledge-bases/{kb_id}/documents/{body['document']['id']}").json()


def _search(client: TestClient, kb_id: str, q: str, k: int = 3) -> list[dict]:
    response = client.get(f"/api/knowledge-bases/{kb_id}/search", params={"q": q, "k": k})
    assert response.status_code == 200, response.text
    return response.json()


def _stored(services: Services, kb_id: str) -> tuple[int, int]:
    """Chunks in Chroma and in the keyword index, every version included."""
    return services.knowledge.store.count(kb_id), services.knowledge.keywords.count(kb_id)


def test_every_format_is_ingested_and_found_with_its_page(
    kclient: TestClient, kservices: Services
) -> None:
    kb = _create_base(kclient)
    pdf = make_pdf(["Chapter one. The harbour is quiet.", f"Chapter two.\n{LIGHTHOUSE}"])
    docs = {
        "guide.pdf": pdf,
        "notes.txt": BAKERY.encode(),
        "rules.md": b"# House rules\n\n- Dragons must be kept outside the tavern after dark.",
        "page.html": b"<html><body><nav>Home | About</nav><article><p>The ferry to Ostrel "
        b"leaves at dawn from pier nine.</p></article></body></html>",
        "letter.docx": make_docx(["Dear Tomas,", "The key to the archive is under the blue vase."]),
    }
    for name, content in docs.items():
        doc = _ingest(kclient, kservices, kb, name, content)
        assert doc["status"] == "ready" and doc["chunk_count"] >= 1, doc

    listed = kclient.get(f"/api/knowledge-bases/{kb}/documents").json()
    assert sorted(d["filename"] for d in listed) == sorted(docs)
    expected = {
        "Who built the lighthouse on Gull Rock?": ("guide.pdf", 2),
        "When can I buy rye bread?": ("notes.txt", None),
        "Where do dragons have to stay at night?": ("rules.md", None),
        "When does the ferry to Ostrel leave?": ("page.html", None),
        "Where is the archive key hidden?": ("letter.docx", None),
    }
    for question, (document, page) in expected.items():
        top = _search(kclient, kb, question)[0]
        assert (top["document"], top["page"]) == (document, page), (question, top)
        assert top["text"] and 0 < top["score"] <= 1 and top["chunk_id"].count(":") == 1
    total = sum(d["chunk_count"] for d in listed)
    assert _stored(kservices, kb) == (total, total)
    base = kclient.get(f"/api/knowledge-bases/{kb}").json()
    assert (base["document_count"], base["chunk_count"]) == (5, total)


def test_the_same_file_twice_adds_nothing(kclient: TestClient, kservices: Services) -> None:
    kb = _create_base(kclient)
    first = _ingest(kclient, kservices, kb, "bakery.txt", BAKERY.encode())
    before = _stored(kservices, kb)
    for name in ("bakery.txt", "copy of bakery.txt"):
        again = _upload(kclient, kb, name, BAKERY.encode())
        assert again.status_code == 200, again.text
        body = again.json()
        assert body["duplicate"] is True and body["job"] is None
        assert body["document"]["id"] == first["id"]
    assert _stored(kservices, kb) == before
    assert len(kclient.get(f"/api/knowledge-bases/{kb}/documents").json()) == 1


def test_a_changed_file_replaces_its_chunks(kclient: TestClient, kservices: Services) -> None:
    kb = _create_base(kclient)
    old = _ingest(kclient, kservices, kb, "town.txt", f"{BAKERY}\n\n{LIGHTHOUSE}".encode())
    assert _search(kclient, kb, "cinnamon buns bakery")[0]["document"] == "town.txt"

    changed = f"The bakery on Fennel Street closed in 1990.\n\n{LIGHTHOUSE}"
    new = _ingest(kclient, kservices, kb, "town.txt", changed.encode())
    assert new["id"] == old["id"] and new["content_hash"] != old["content_hash"]
    texts = [hit["text"] for hit in _search(kclient, kb, "cinnamon buns bakery", k=5)]
    assert texts and all("cinnamon" not in t for t in texts)
    assert any("closed in 1990" in t for t in texts)
    # The old version is gone from both stores, not merely hidden.
    assert _stored(kservices, kb) == (new["chunk_count"], new["chunk_count"])


def test_deleting_a_document_makes_it_unsearchable_and_frees_its_chunks(
    kclient: TestClient, kservices: Services
) -> None:
    kb = _create_base(kclient)
    keep = _ingest(kclient, kservices, kb, "lighthouse.txt", LIGHTHOUSE.encode())
    gone = _ingest(kclient, kservices, kb, "bakery.txt", BAKERY.encode())
    query = "rye bread bakery Fennel Street"
    assert "bakery.txt" in {h["document"] for h in _search(kclient, kb, query, k=5)}
    assert kclient.delete(f"/api/knowledge-bases/{kb}/documents/{gone['id']}").status_code == 204
    hits = _search(kclient, kb, query, k=5)
    assert not any(h["document"] == "bakery.txt" for h in hits), hits
    assert _search(kclient, kb, "who built the lighthouse?")[0]["document"] == "lighthouse.txt"
    assert _stored(kservices, kb) == (keep["chunk_count"], keep["chunk_count"])
    missing = kclient.delete(f"/api/knowledge-bases/{kb}/documents/{gone['id']}")
    assert missing.status_code == 404


def test_one_base_serves_two_agents_and_each_agent_can_use_several(
    kclient: TestClient, kservices: Services
) -> None:
    lore = _create_base(kclient, "Lore")
    town = _create_base(kclient, "Town")
    _ingest(kclient, kservices, lore, "lighthouse.txt", LIGHTHOUSE.encode())
    _ingest(kclient, kservices, town, "bakery.txt", BAKERY.encode())
    ann = kclient.post("/api/agents", json={"name": "Ann"}).json()["id"]
    bob = kclient.post("/api/agents", json={"name": "Bob"}).json()["id"]
    for agent in (ann, bob):
        assert kclient.put(f"/api/agents/{agent}/knowledge-bases/{lore}").status_code == 200
    both = kclient.put(f"/api/agents/{ann}/knowledge-bases/{town}").json()
    assert [b["id"] for b in both] == [lore, town]
    assert sorted(kclient.get(f"/api/knowledge-bases/{lore}").json()["agent_ids"]) == sorted(
        [ann, bob]
    )

    def found(agent: str, q: str) -> set[str]:
        response = kclient.get(f"/api/agents/{agent}/knowledge-search", params={"q": q})
        assert response.status_code == 200, response.text
        return {h["document"] for h in response.json()}

    assert "bakery.txt" in found(ann, "when is rye bread sold?")  # Ann uses both bases
    assert found(bob, "when is rye bread sold?") <= {"lighthouse.txt"}
    assert "lighthouse.txt" in found(bob, "who built the lighthouse?")

    assert kclient.delete(f"/api/agents/{ann}/knowledge-bases/{lore}").status_code == 200
    assert "lighthouse.txt" not in found(ann, "who built the lighthouse?")
    assert "lighthouse.txt" in found(bob, "who built the lighthouse?")  # Bob still has it
    assert kclient.delete(f"/api/knowledge-bases/{lore}").status_code == 204
    assert kclient.get(f"/api/agents/{bob}/knowledge-bases").json() == []
    assert kclient.get(f"/api/knowledge-bases/{lore}").status_code == 404
    assert kclient.delete(f"/api/agents/{bob}/knowledge-bases/{lore}").status_code == 404


BAD_FILES = [
    ("broken.pdf", make_corrupt_pdf(), 422, "damaged"),
    ("locked.pdf", make_encrypted_pdf(["secret plans"]), 422, "encrypted"),
    ("scan.pdf", make_scanned_pdf(), 422, "no text layer"),
    ("empty.txt", b"", 422, "empty"),
    ("photo.txt", PNG_BYTES * 20, 422, "binary"),
    ("tool.exe", b"MZ\x90\x00" * 50, 415, "unsupported type"),
    ("huge.txt", b"a" * (2 * 1024 * 1024 + 1), 413, "limit"),
]


def test_bad_files_are_refused_by_name_and_indexed_documents_stay_searchable(
    kclient: TestClient, kservices: Services
) -> None:
    kservices.settings.knowledge.max_upload_mb = 2.0
    kb = _create_base(kclient)
    kept = _ingest(kclient, kservices, kb, "lighthouse.txt", LIGHTHOUSE.encode())
    for name, content, status, reason in BAD_FILES:
        response = _upload(kclient, kb, name, content)
        assert response.status_code == status, (name, response.text)
        message = response.json()["error"]["message"]
        assert message.startswith(f"{name}:") and reason in message, message
    listed = kclient.get(f"/api/knowledge-bases/{kb}/documents").json()
    assert [d["filename"] for d in listed] == ["lighthouse.txt"]
    assert _search(kclient, kb, "who built the lighthouse?")[0]["document"] == "lighthouse.txt"
    assert _stored(kservices, kb) == (kept["chunk_count"], kept["chunk_count"])
    assert kclient.get("/api/jobs", params={"target_id": kb}).json()[0]["id"] == kept["job_id"]


def test_unknown_ids_and_bad_queries_get_clear_errors(kclient: TestClient) -> None:
    kb = _create_base(kclient)
    assert kclient.get("/api/knowledge-bases/nope").status_code == 404
    assert _upload(kclient, "nope", "a.txt", b"hello").status_code == 404
    assert kclient.put(f"/api/agents/nope/knowledge-bases/{kb}").status_code == 404
    bad_k = kclient.get(f"/api/knowledge-bases/{kb}/search", params={"q": "x", "k": 0})
    assert bad_k.status_code == 422
    assert kclient.get("/api/messages/nope/trace").status_code == 404
    odd = kclient.get(f"/api/knowledge-bases/{kb}/search", params={"q": 'title:"x AND (('})
    assert odd.status_code == 200 and odd.json() == []  # query syntax never reaches tantivy


class _GatedEmbedder:
    """Failure injection: once armed, the second batch of an ingest waits until released,
    so a cancel lands mid-ingest whatever the machine's speed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.armed = False
        self.batches = 0
        self.waiting = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed_documents(self, texts: Any) -> list[list[float]]:
        if self.armed:
            self.batches += 1
            if self.batches == 2:
                self.waiting.set()
                self.release.wait(120)
        return self._inner.embed_documents(texts)


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_cancelling_an_ingest_drops_it_cleanly(
    knowledge_settings: Settings, llm_pool: LLMPool, embedder: Any
) -> None:
    from app import create_app

    gated = _GatedEmbedder(embedder)
    kservices = build_services(knowledge_settings, llm=llm_pool, embedder=gated)
    with TestClient(create_app(services=kservices)) as kclient:
        try:
            _cancel_mid_ingest(kclient, kservices, gated)
        finally:
            gated.release.set()
    kservices.close()


def _cancel_mid_ingest(kclient: TestClient, kservices: Services, gated: _GatedEmbedder) -> None:
    kb = _create_base(kclient)
    kept = _ingest(kclient, kservices, kb, "lighthouse.txt", LIGHTHOUSE.encode())
    # Two batches of chunks: cancelled while the second one is embedded.
    long_text = "\n\n".join(f"Entry {i}: {BAKERY} {LIGHTHOUSE}" for i in range(300))
    gated.armed = True
    body = _upload(kclient, kb, "long.txt", long_text.encode()).json()
    job_id = body["job"]["id"]
    assert gated.waiting.wait(120), "ingest never reached its second batch"
    assert kclient.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    gated.release.set()
    assert kservices.jobs.wait(job_id, principal=SYSTEM).status == "cancelled"
    doc = kclient.get(f"/api/knowledge-bases/{kb}/documents/{body['document']['id']}").json()
    assert doc["status"] == "failed" and "cancelled" in doc["error"]
    hits = _search(kclient, kb, "Entry 3 bakery")
    assert not any(h["document"] == "long.txt" for h in hits), hits
    assert _search(kclient, kb, "who built the lighthouse?")[0]["document"] == "lighthouse.txt"
    # The batch that was running when the cancel came finishes, then its chunks are purged too.
    expected = (kept["chunk_count"], kept["chunk_count"])
    wait_until(
        lambda: _stored(kservices, kb) == expected,
        timeout=180,
        interval=0.2,
        message=lambda: f"the cancelled batch's chunks to be purged: {_stored(kservices, kb)}",
    )
