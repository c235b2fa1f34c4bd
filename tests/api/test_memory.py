"""A conversation's memory over the REST API with the real bundled model: author's note and
summary settings, pinned messages that survive trimming, and the background summary job."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agents.conversations import new_message, take_positions
from agents.llm.pool import LLMPool
from agents.memory import SUMMARISE_KIND
from container import Services
from core.principal import SYSTEM

SMALL_WINDOW = 600


@pytest.fixture
def small_window(llm_pool: LLMPool, monkeypatch: pytest.MonkeyPatch) -> int:
    """The bundled model with a small context window (as ``ANIMA_LLM_CONTEXT_WINDOW`` sets)."""
    monkeypatch.setattr(llm_pool.settings.llm, "context_window", SMALL_WINDOW)
    assert llm_pool.get().context_window == SMALL_WINDOW
    return SMALL_WINDOW


def _chat(client: TestClient) -> str:
    agent = client.post(
        "/api/agents",
        json={
            "name": "Mira",
            "description": "{{char}} keeps the lighthouse.",
            "first_mes": "Evening, {{user}}.",
            "generation": {"max_new_tokens": 8, "temperature": 0.0},
        },
    ).json()
    return client.post(f"/api/agents/{agent['id']}/conversations").json()["id"]


def _seed(services: Services, cid: str, turns: int) -> None:
    """``turns`` user/assistant pairs written straight to the store (no model needed)."""
    with services.db.session() as s:
        start = take_positions(s, cid, 2 * turns)
        for i in range(turns):
            s.add(new_message(cid, start + 2 * i, "user", [f"Question {i}: the tide at dock {i}?"]))
            s.add(new_message(cid, start + 2 * i + 1, "assistant", [f"Dock {i} floods at dusk."]))


def _prompt(client: TestClient, cid: str) -> dict:
    resp = client.get(f"/api/conversations/{cid}/prompt")
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.model
def test_authors_note_and_summary_settings_reach_the_prompt(client: TestClient) -> None:
    cid = _chat(client)
    resp = client.patch(
        f"/api/conversations/{cid}",
        json={"authors_note": "[Mira is tired.]", "authors_note_depth": 0},
    )
    assert resp.status_code == 200, resp.text
    conv = resp.json()
    assert conv["authors_note"] == "[Mira is tired.]" and conv["authors_note_depth"] == 0
    assert conv["authors_note_frequency"] == 1  # untouched fields keep their value
    assert _prompt(client, cid)["messages"][-1]["content"] == "[Mira is tired.]"

    client.patch(f"/api/conversations/{cid}", json={"summary": "They met at the dock."})
    assert "[Summary: They met at the dock.]" in _prompt(client, cid)["messages"][0]["content"]
    off = client.patch(f"/api/conversations/{cid}", json={"authors_note_frequency": 0}).json()
    assert off["authors_note"] == "[Mira is tired.]"
    assert all(m["content"] != "[Mira is tired.]" for m in _prompt(client, cid)["messages"])


def test_bad_conversation_settings_are_refused(client: TestClient) -> None:
    cid = _chat(client)
    bad = [
        {"authors_note": "n" * 4001},
        {"summary": "s" * 8001},
        {"authors_note_depth": -1},
        {"authors_note_frequency": 1000},
        {"summary_pinned": None},
    ]
    for body in bad:
        assert client.patch(f"/api/conversations/{cid}", json=body).status_code == 422, body
    unknown = client.patch(f"/api/conversations/{cid}", json={"persona_id": "f" * 32})
    assert unknown.status_code == 404
    assert client.patch("/api/conversations/nope", json={"summary": "x"}).status_code == 404
    assert client.put(f"/api/conversations/{cid}/messages/nope/pin").status_code == 404


@pytest.mark.model
def test_pinned_messages_survive_trimming(
    client: TestClient, services: Services, small_window: int
) -> None:
    cid = _chat(client)
    _seed(services, cid, 40)
    messages = client.get(f"/api/conversations/{cid}/messages").json()
    old = messages[3]
    before = _prompt(client, cid)
    assert before["dropped_history"] > 0
    assert all(m["content"] != old["content"] for m in before["messages"])

    pinned = client.put(f"/api/conversations/{cid}/messages/{old['id']}/pin")
    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    assert [m["id"] for m in client.get(f"/api/conversations/{cid}/pins").json()] == [old["id"]]
    after = _prompt(client, cid)
    assert [m["content"] for m in after["messages"]].count(old["content"]) == 1
    assert after["prompt_tokens"] <= small_window

    client.delete(f"/api/conversations/{cid}/messages/{old['id']}/pin")
    assert client.get(f"/api/conversations/{cid}/pins").json() == []
    assert all(m["content"] != old["content"] for m in _prompt(client, cid)["messages"])


@pytest.mark.model
def test_summary_job_covers_dropped_turns_and_reaches_the_next_prompt(
    client: TestClient, services: Services, small_window: int
) -> None:
    cid = _chat(client)
    _seed(services, cid, 40)
    reply = client.post(f"/api/conversations/{cid}/messages", json={"content": "And dock 40?"})
    assert reply.status_code == 200, reply.text
    # The reply queued one summary job for the conversation; asking again finds the same one.
    jobs = services.jobs.list(
        kind=SUMMARISE_KIND, target_type="conversation", target_id=cid, principal=SYSTEM
    )
    assert len(jobs) == 1
    # The job is the chat's: another browser neither lists, reads nor cancels it.
    stranger = TestClient(client.app)
    assert jobs[0].id not in [j["id"] for j in stranger.get("/api/jobs").json()]
    assert stranger.get(f"/api/jobs/{jobs[0].id}").status_code == 403
    assert stranger.post(f"/api/jobs/{jobs[0].id}/cancel").status_code == 403
    assert client.get(f"/api/jobs/{jobs[0].id}").status_code == 200
    again = client.post(f"/api/conversations/{cid}/summarise").json()["job_id"]
    assert again == jobs[0].id or services.jobs.get(jobs[0].id, principal=SYSTEM).finished
    done = services.jobs.wait(jobs[0].id, timeout=300, principal=SYSTEM)
    assert done.status == "succeeded", done.error

    conv = client.get(f"/api/conversations/{cid}").json()
    assert conv["summary"].strip() and conv["summary_upto"] > 4
    system = _prompt(client, cid)["messages"][0]["content"]
    assert f"[Summary: {conv['summary'].strip()}]" in system
    # Messages the summary covers leave the prompt: it now starts at ``summary_upto``.
    first_covered = client.get(f"/api/conversations/{cid}/messages").json()[1]
    assert all(m["content"] != first_covered["content"] for m in _prompt(client, cid)["messages"])


@pytest.mark.model
def test_a_pinned_summary_is_not_rewritten(
    client: TestClient, services: Services, small_window: int
) -> None:
    cid = _chat(client)
    _seed(services, cid, 40)
    mine = "Mira owes Kit a lantern."
    resp = client.patch(f"/api/conversations/{cid}", json={"summary": mine, "summary_pinned": True})
    assert resp.status_code == 200 and resp.json()["summary_pinned"] is True
    assert client.post(f"/api/conversations/{cid}/summarise").json() == {"job_id": None}
    reply = client.post(f"/api/conversations/{cid}/messages", json={"content": "And dock 40?"})
    assert reply.status_code == 200, reply.text
    jobs = services.jobs.list(
        kind=SUMMARISE_KIND, target_type="conversation", target_id=cid, principal=SYSTEM
    )
    assert jobs == []
    # Even a job that was queued before the pin leaves it alone.
    assert services.memory.summarise_chunk(cid, 60) is None
    conv = client.get(f"/api/conversations/{cid}").json()
    assert conv["summary"] == mine and conv["summary_upto"] == 0
