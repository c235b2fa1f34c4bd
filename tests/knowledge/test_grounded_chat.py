"""Grounded replies: chunks in the prompt with numbered markers, sources on the reply (REST and
``/v1`` through the official ``openai`` package), and a stored retrieval trace per message.

The reply comes from the real bundled model; the tests check the citation machinery around it
(what went into the prompt, what the reply carries, what was stored), not the model's prose.
"""

from __future__ import annotations

import openai
import pytest
from fastapi.testclient import TestClient

from agents.prompt import KNOWLEDGE_HEADER, build_prompt
from agents.schema import CardData, ChatMessage
from container import Services
from tests.knowledge.test_knowledge_api import BAKERY, LIGHTHOUSE, _create_base, _ingest

pytestmark = pytest.mark.model
QUESTION = "Who built the lighthouse on Gull Rock?"


def _grounded_agent(client: TestClient, services: Services) -> tuple[str, str, dict]:
    kb = _create_base(client)
    doc = _ingest(client, services, kb, "lighthouse.txt", LIGHTHOUSE.encode())
    _ingest(client, services, kb, "bakery.txt", BAKERY.encode())
    agent = client.post("/api/agents", json={"name": "Keeper", "description": "A keeper."})
    agent_id = agent.json()["id"]
    assert client.put(f"/api/agents/{agent_id}/knowledge-bases/{kb}").status_code == 200
    return agent_id, kb, doc


def test_a_grounded_reply_cites_its_sources_and_stores_its_trace(
    kclient: TestClient, kservices: Services
) -> None:
    agent_id, kb, doc = _grounded_agent(kclient, kservices)
    conv = kclient.post(f"/api/agents/{agent_id}/conversations", json={}).json()["id"]
    response = kclient.post(
        f"/api/conversations/{conv}/messages",
        json={"content": QUESTION, "generation": {"max_new_tokens": 8, "temperature": 0}},
    )
    assert response.status_code == 200, response.text
    reply = response.json()
    first = reply["sources"][0]
    assert first["marker"] == 1 and first["document"] == "lighthouse.txt"
    assert "Mara Quell" in first["snippet"] and first["document_id"] == doc["id"]
    assert [s["marker"] for s in reply["sources"]] == list(range(1, len(reply["sources"]) + 1))

    trace = kclient.get(f"/api/messages/{reply['message']['id']}/trace").json()
    assert trace["query"] == QUESTION and trace["kb_ids"] == [kb]
    assert [h["chunk_id"] for h in trace["hits"]] == [s["chunk_id"] for s in reply["sources"]]
    assert trace["hits"] and all(
        0 < h["score"] <= 1 and h["similarity"] >= 0.2 for h in trace["hits"]
    )

    # The user's own message has no trace; a regenerated reply gets a fresh one.
    user_message = kclient.get(f"/api/conversations/{conv}/messages").json()[-2]
    assert kclient.get(f"/api/messages/{user_message['id']}/trace").status_code == 404
    again = kclient.post(
        f"/api/conversations/{conv}/regenerate",
        json={"generation": {"max_new_tokens": 4, "temperature": 0}},
    ).json()
    assert again["sources"][0]["document"] == "lighthouse.txt"
    newer = kclient.get(f"/api/messages/{again['message']['id']}/trace").json()
    assert newer["created_at"] > trace["created_at"]


def test_a_reply_without_knowledge_bases_or_relevant_chunks_has_no_sources(
    kclient: TestClient, kservices: Services
) -> None:
    agent_id, _kb, _doc = _grounded_agent(kclient, kservices)
    plain = kclient.post("/api/agents", json={"name": "Plain"}).json()["id"]
    for agent, content in ((plain, QUESTION), (agent_id, "hi!")):  # small talk: below the floor
        conv = kclient.post(f"/api/agents/{agent}/conversations", json={}).json()["id"]
        reply = kclient.post(
            f"/api/conversations/{conv}/messages",
            json={"content": content, "generation": {"max_new_tokens": 4}},
        ).json()
        assert reply["sources"] == [], (agent, reply["sources"])


def test_openai_client_gets_sources_as_an_extra_field(
    kclient: TestClient, kservices: Services
) -> None:
    agent_id, _kb, _doc = _grounded_agent(kclient, kservices)
    client = openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=kclient, max_retries=0
    )
    messages = [{"role": "user", "content": QUESTION}]
    completion = client.chat.completions.create(
        model=agent_id,
        messages=messages,
        max_tokens=6,
        temperature=0,  # type: ignore[arg-type]
    )
    assert completion.choices[0].message.content is not None
    sources = (completion.model_extra or {})["sources"]
    assert sources[0]["document"] == "lighthouse.txt" and sources[0]["marker"] == 1

    stream = client.chat.completions.create(
        model=agent_id,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=4,
        stream=True,
    )
    chunks = list(stream)
    assert (chunks[0].model_extra or {})["sources"][0]["document"] == "lighthouse.txt"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) is not None


def test_knowledge_goes_into_the_prompt_numbered_and_only_as_much_as_fits() -> None:
    card = CardData(name="Keeper", description="A lighthouse keeper.")
    history = [ChatMessage(role="user", content=QUESTION)]
    blocks = [f"[{n}] (doc.txt) {'word ' * 40}fact {n}." for n in range(1, 6)]

    def words(text: str) -> int:
        return len(text.split())

    roomy = build_prompt(
        card,
        history,
        user_name="Ann",
        count_tokens=words,
        context_window=2000,
        max_new_tokens=50,
        knowledge=blocks,
    )
    system = roomy.messages[0].content
    assert roomy.knowledge_used == 5
    assert KNOWLEDGE_HEADER.replace("{{char}}", "Keeper") in system
    assert all(b in system for b in blocks) and system.index("fact 1.") < system.index("fact 5.")
    assert roomy.messages[-1].content == QUESTION

    tight = build_prompt(
        card,
        history,
        user_name="Ann",
        count_tokens=words,
        context_window=230,
        max_new_tokens=50,
        knowledge=blocks,
    )
    assert 0 < tight.knowledge_used < 5  # the best ones first, the rest left out
    assert "fact 1." in tight.messages[0].content and "fact 5." not in tight.messages[0].content
    assert tight.messages[-1].content == QUESTION  # the user's turn is never pushed out
