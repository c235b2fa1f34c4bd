"""Conversations over the REST API with the real bundled model: stored, streamed, regenerated."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agents.llm.base import StreamResult
from agents.schema import ChatMessage, GenerationSettings
from container import Services
from core.errors import BackendError
from core.principal import SYSTEM
from tests.fake_backends import ScriptedBackend
from tests.waiting import wait_until

FAST = {"max_new_tokens": 12, "temperature": 0.0}


def _agent(client: TestClient) -> dict:
    resp = client.post(
        "/api/agents",
        json={
            "name": "Mira",
            "description": "{{char}} is a lighthouse keeper who speaks briefly.",
            "first_mes": "Evening, {{user}}. Storm's coming.",
            "alternate_greetings": ["Ah, {{user}}, you made it."],
            "generation": FAST,
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def _sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events


@pytest.mark.model
def test_conversation_greeting_reply_and_history_are_stored(client: TestClient) -> None:
    agent = _agent(client)
    conv = client.post(f"/api/agents/{agent['id']}/conversations", json={"user_name": "Ned"}).json()
    first = conv["messages"][0]
    assert first["role"] == "assistant"
    assert first["content"] == "Evening, Ned. Storm's coming."
    assert first["alternatives"] == ["Ah, Ned, you made it."]

    resp = client.post(
        f"/api/conversations/{conv['id']}/messages", json={"content": "Is the lamp lit?"}
    )
    assert resp.status_code == 200, resp.text
    reply = resp.json()
    assert reply["message"]["role"] == "assistant"
    assert reply["message"]["content"].strip()
    assert 0 < reply["usage"]["completion_tokens"] <= FAST["max_new_tokens"]

    messages = client.get(f"/api/conversations/{conv['id']}/messages").json()
    assert [m["role"] for m in messages] == ["assistant", "user", "assistant"]
    assert messages[1]["content"] == "Is the lamp lit?"
    assert messages[2]["content"] == reply["message"]["content"]
    listed = client.get(f"/api/agents/{agent['id']}/conversations").json()
    assert listed[0]["title"] == "Is the lamp lit?"


@pytest.mark.model
def test_streamed_reply_arrives_in_pieces_and_is_stored_whole(client: TestClient) -> None:
    agent = _agent(client)
    conv = client.post(f"/api/agents/{agent['id']}/conversations").json()
    with client.stream(
        "POST",
        f"/api/conversations/{conv['id']}/messages",
        json={"content": "Tell me about the storm.", "stream": True},
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        body = "".join(resp.iter_text())
    events = _sse(body)
    deltas = [data["text"] for kind, data in events if kind == "delta"]
    assert len(deltas) >= 2
    kind, done = events[-1]
    assert kind == "done"
    assert done["message"]["content"] == "".join(deltas)
    stored = client.get(f"/api/conversations/{conv['id']}").json()["messages"][-1]
    assert stored["content"] == "".join(deltas)


@pytest.mark.model
def test_regenerate_keeps_the_old_reply_as_alternative(client: TestClient) -> None:
    agent = _agent(client)
    conv = client.post(f"/api/agents/{agent['id']}/conversations").json()
    first = client.post(
        f"/api/conversations/{conv['id']}/messages", json={"content": "Hello there."}
    ).json()["message"]
    again = client.post(
        f"/api/conversations/{conv['id']}/regenerate",
        json={"generation": {"temperature": 1.0, "seed": 7}},
    ).json()["message"]
    assert again["id"] == first["id"]
    assert again["alternatives"] == [first["content"]]
    messages = client.get(f"/api/conversations/{conv['id']}/messages").json()
    assert len(messages) == 3


def test_chat_input_errors(client: TestClient) -> None:
    agent = _agent(client)
    conv = client.post(f"/api/agents/{agent['id']}/conversations").json()
    assert (
        client.post("/api/conversations/nope/messages", json={"content": "hi"}).status_code == 404
    )
    assert client.post("/api/agents/nope/conversations").status_code == 404
    empty = client.post(f"/api/conversations/{conv['id']}/messages", json={"content": "   "})
    assert empty.status_code == 422
    regen = client.post(f"/api/conversations/{conv['id']}/regenerate")
    assert regen.status_code == 422 and "nothing to regenerate" in regen.json()["error"]["message"]
    bad = client.post(
        f"/api/conversations/{conv['id']}/messages",
        json={"content": "hi", "generation": {"temperature": "hot"}},
    )
    assert bad.status_code == 422
    # A refused request stores nothing beyond what passed validation.
    assert len(client.get(f"/api/conversations/{conv['id']}/messages").json()) >= 1


class _FailingBackend(ScriptedBackend):
    """Failure injection: a model that dies after its first words."""

    model_name = "failing"

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        yield "The lamp"
        raise BackendError("model crashed")


def test_model_failure_mid_stream_reports_error_and_keeps_user_message(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _agent(client)
    conv = client.post(f"/api/agents/{agent['id']}/conversations").json()
    monkeypatch.setattr(
        services.chat.llm, "get", lambda model=None, adapter=None: _FailingBackend()
    )
    with client.stream(
        "POST",
        f"/api/conversations/{conv['id']}/messages",
        json={"content": "Is it safe?", "stream": True},
    ) as resp:
        events = _sse("".join(resp.iter_text()))
    assert events[0] == ("delta", {"text": "The lamp"})
    assert events[-1] == ("error", {"message": "model crashed"})
    messages = client.get(f"/api/conversations/{conv['id']}/messages").json()
    assert messages[1]["content"] == "Is it safe?"
    # The partial reply is kept so the user sees what arrived.
    assert messages[-1]["content"] == "The lamp"


@pytest.mark.model
def test_client_that_leaves_mid_stream_frees_the_model(
    live_server: str, services: Services
) -> None:
    """A reader who disconnects must not leave the model locked for everyone else."""
    import httpx

    agent = services.agents.create_agent(
        {
            "name": "Quill",
            "description": "A storyteller.",
            "generation": {"max_new_tokens": 1500, "repetition_penalty": 1.0},
        },
        principal=SYSTEM,
    )
    conv = services.chat.create_conversation(agent.id, principal=SYSTEM)
    with httpx.Client(timeout=120) as http:
        with http.stream(
            "POST",
            f"{live_server}/api/conversations/{conv.id}/messages",
            json={"content": "Tell me a very long story.", "stream": True},
        ) as resp:
            for line in resp.iter_lines():
                if line.startswith("event: delta"):
                    break  # leave after the first piece of the reply
        started = time.monotonic()
        other = http.post(
            f"{live_server}/v1/chat/completions",
            json={
                "model": agent.id,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4,
            },
        )
        assert other.status_code == 200, other.text
    # 1500 tokens would take far longer than this; the abandoned reply was stopped.
    assert time.monotonic() - started < 30
    stored = wait_until(
        lambda: (
            m
            if len(m := services.chat.get_conversation(conv.id, principal=SYSTEM).messages) >= 2
            else None
        ),
        timeout=10,
        interval=0.1,
        message="the partial reply to be stored",
    )
    # No greeting on this card: the user's message, then the part of the reply that was made.
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[-1].content.strip()
