"""Group chats over the REST API with the real bundled model: three agents, each reply order,
"let X reply", and what each speaker's prompt holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agents.schema import ChatMessage, GenerationSettings
from container import Services
from core.principal import SYSTEM

FAST = {"max_new_tokens": 6, "temperature": 0.0}
PEOPLE = {
    "Mira": "{{char}} keeps the lighthouse and speaks briefly.",
    "Tobin": "{{char}} is a fisherman who complains about the weather.",
    "Essa": "{{char}} is a cartographer who loves old maps.",
}


class PromptRecorder:
    """The real backend, with every prompt it is given kept in ``prompts``."""

    def __init__(self, backend: Any, prompts: list[tuple[list[ChatMessage], list[str]]]) -> None:
        self._backend = backend
        self._prompts = prompts

    def stream(self, messages: list[ChatMessage], params: GenerationSettings, result: Any) -> Any:
        self._prompts.append((list(messages), list(params.stop)))
        return self._backend.stream(messages, params, result)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


@pytest.fixture
def prompts(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    seen: list[tuple[list[ChatMessage], list[str]]] = []
    real = services.chat.llm.get
    monkeypatch.setattr(
        services.chat.llm, "get", lambda model=None, adapter=None: PromptRecorder(real(), seen)
    )
    yield seen


def _agents(client: TestClient) -> dict[str, str]:
    ids = {}
    for name, description in PEOPLE.items():
        resp = client.post(
            "/api/agents",
            json={
                "name": name,
                "description": description,
                "first_mes": f"I am {name}.",
                "generation": FAST,
            },
        )
        assert resp.status_code == 201, resp.text
        ids[name] = resp.json()["id"]
    return ids


def _group(client: TestClient, ids: dict[str, str], order: str) -> dict:
    resp = client.post(
        "/api/conversations",
        json={"agent_ids": list(ids.values()), "reply_order": order, "user_name": "Ned"},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def _send(client: TestClient, cid: str, text: str) -> dict:
    resp = client.post(f"/api/conversations/{cid}/messages", json={"content": text})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.model
def test_round_robin_goes_through_every_member_in_order(client: TestClient) -> None:
    ids = _agents(client)
    conv = _group(client, ids, "round_robin")
    assert conv["members"] == list(ids.values())
    assert conv["agent_id"] == ids["Mira"]
    # Each member opens with its greeting, in speaking order, under its own name.
    assert [(m["name"], m["content"]) for m in conv["messages"]] == [
        (n, f"I am {n}.") for n in PEOPLE
    ]
    speakers = []
    for text in ("Hello all.", "How is the sea?", "Any maps?", "Good night."):
        reply = _send(client, conv["id"], text)["message"]
        assert reply is not None
        speakers.append((reply["speaker_id"], reply["name"]))
    assert speakers == [(ids[n], n) for n in ("Mira", "Tobin", "Essa", "Mira")]
    stored = client.get(f"/api/conversations/{conv['id']}").json()["messages"]
    assert [m["role"] for m in stored[3:]] == ["user", "assistant"] * 4


@pytest.mark.model
def test_mention_picks_the_named_member_else_round_robin(client: TestClient) -> None:
    ids = _agents(client)
    conv = _group(client, ids, "mention")
    assert _send(client, conv["id"], "essa, where is the old map?")["message"]["name"] == "Essa"
    assert _send(client, conv["id"], "What about you, Tobin?")["message"]["name"] == "Tobin"
    # Nobody named: the member after the last speaker.
    assert _send(client, conv["id"], "And the rest of you?")["message"]["name"] == "Essa"


@pytest.mark.model
def test_manual_replies_only_when_asked(client: TestClient) -> None:
    ids = _agents(client)
    conv = _group(client, ids, "manual")
    sent = _send(client, conv["id"], "Who wants tea?")
    assert sent["message"] is None
    stored = client.get(f"/api/conversations/{conv['id']}").json()["messages"]
    assert [m["role"] for m in stored] == ["assistant"] * 3 + ["user"]

    resp = client.post(f"/api/conversations/{conv['id']}/reply", json={"agent_id": ids["Tobin"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["message"]["name"] == "Tobin"
    # Streamed like a send.
    resp = client.post(
        f"/api/conversations/{conv['id']}/reply", json={"agent_id": ids["Essa"], "stream": True}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in resp.text and '"name":"Essa"' in resp.text.replace(" ", "")
    stored = client.get(f"/api/conversations/{conv['id']}").json()["messages"]
    assert [m["name"] for m in stored[-2:]] == ["Tobin", "Essa"]


@pytest.mark.model
def test_each_speaker_sees_the_others_by_name_and_its_own_card(
    client: TestClient, prompts: list
) -> None:
    ids = _agents(client)
    conv = _group(client, ids, "manual")
    _send(client, conv["id"], "Tell me a story.")
    client.post(f"/api/conversations/{conv['id']}/reply", json={"agent_id": ids["Mira"]})
    client.post(f"/api/conversations/{conv['id']}/reply", json={"agent_id": ids["Tobin"]})
    assert len(prompts) == 2
    stored = client.get(f"/api/conversations/{conv['id']}").json()["messages"]
    mira_line = stored[-2]["content"]

    messages, stops = prompts[1]  # Tobin's turn
    system = messages[0].content
    assert "Tobin is a fisherman" in system and "lighthouse" not in system
    turns = [(m.role, m.content) for m in messages[1:]]
    assert ("user", "Mira: I am Mira.") in turns
    assert ("user", "Essa: I am Essa.") in turns
    assert ("assistant", "I am Tobin.") in turns  # its own line
    assert ("user", "Tell me a story.") in turns
    assert turns[-1] == ("user", f"Mira: {mira_line}")
    assert {"\nNed:", "\nMira:", "\nTobin:", "\nEssa:"} <= set(stops)

    messages, _ = prompts[0]  # Mira's turn: its own card, Tobin named
    assert "Mira keeps the lighthouse" in messages[0].content
    assert ("assistant", "I am Mira.") in [(m.role, m.content) for m in messages[1:]]
    assert ("user", "Tobin: I am Tobin.") in [(m.role, m.content) for m in messages[1:]]


@pytest.mark.model
def test_members_and_order_change_and_a_deleted_member_leaves(client: TestClient) -> None:
    ids = _agents(client)
    conv = _group(client, ids, "round_robin")
    cid = conv["id"]
    resp = client.patch(
        f"/api/conversations/{cid}/group",
        json={"agent_ids": [ids["Essa"], ids["Mira"], ids["Tobin"]], "reply_order": "manual"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["members"] == [ids["Essa"], ids["Mira"], ids["Tobin"]]
    assert resp.json()["reply_order"] == "manual"
    assert resp.json()["agent_id"] == ids["Essa"]

    # The first member goes: the chat stays, led by the next member.
    assert client.delete(f"/api/agents/{ids['Essa']}").status_code == 204
    after = client.get(f"/api/conversations/{cid}").json()
    assert after["members"] == [ids["Mira"], ids["Tobin"]]
    assert after["agent_id"] == ids["Mira"]
    resp = client.post(f"/api/conversations/{cid}/reply", json={"agent_id": ids["Tobin"]})
    assert resp.status_code == 200 and resp.json()["message"]["name"] == "Tobin"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"agent_ids": ["only-one"]}, 422),
        ({"agent_ids": ["a", "b"], "reply_order": "loudest"}, 422),
        ({"agent_ids": ["nobody1", "nobody2"]}, 404),
    ],
)
def test_bad_group_chats_are_refused(client: TestClient, body: dict, status: int) -> None:
    assert client.post("/api/conversations", json=body).status_code == status


def test_let_reply_refuses_a_stranger(client: TestClient) -> None:
    ids = _agents(client)
    conv = _group(client, ids, "manual")
    outsider = client.post("/api/agents", json={"name": "Zed"}).json()["id"]
    resp = client.post(f"/api/conversations/{conv['id']}/reply", json={"agent_id": outsider})
    assert resp.status_code == 422
    assert "is not a member of this chat" in resp.text


@pytest.mark.model
def test_a_group_reply_says_who_speaks_for_the_voice(
    client: TestClient, services: Services
) -> None:
    ids = _agents(client)
    conv = _group(client, ids, "manual")
    waiting = services.chat.send(conv["id"], "Anyone?", principal=SYSTEM)
    assert waiting.waiting and waiting.collect() == "" and waiting.message is None
    reply = services.group_chat.reply(conv["id"], ids["Tobin"], principal=SYSTEM)
    assert (reply.speaker_id, reply.name) == (ids["Tobin"], "Tobin")  # the voice speaks as it
    reply.collect()
    assert reply.message is not None and reply.message.speaker_id == ids["Tobin"]
