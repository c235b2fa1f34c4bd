"""Swipes, edits, deletes, branches, continue and impersonate over the REST API.

The replies come from the real bundled model (a few tokens each). A recorder wraps the real
backend to keep the prompt each reply was given, so the tests can see what history the model
read. Only the delete-while-streaming test holds a reply open with a scripted model: that is
failure injection, the store is what is under test there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from agents.chat import MAX_MESSAGE_CHARS
from agents.llm.base import StreamResult
from agents.records import MessageRecord
from agents.schema import ChatMessage, GenerationSettings
from container import Services
from tests.fake_backends import ScriptedBackend

FAST = {"max_new_tokens": 6, "temperature": 0.0}
pytestmark = pytest.mark.model


class _Recorder:
    """The real backend, keeping every prompt it is asked to continue."""

    def __init__(self, real: Any, prompts: list[list[ChatMessage]]) -> None:
        self.real = real
        self.prompts = prompts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Any:
        self.prompts.append(list(messages))
        return self.real.stream(messages, params, result)


@pytest.fixture
def prompts(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[list[ChatMessage]]:
    seen: list[list[ChatMessage]] = []
    real_get = services.chat.llm.get
    monkeypatch.setattr(
        services.chat.llm, "get", lambda *a, **k: _Recorder(real_get(*a, **k), seen)
    )
    return seen


def _chat(client: TestClient) -> tuple[str, list[dict]]:
    """A conversation with two greetings and one exchange: greeting, user, reply."""
    agent = client.post(
        "/api/agents",
        json={
            "name": "Mira",
            "description": "{{char}} is a lighthouse keeper who speaks briefly.",
            "first_mes": "Evening, {{user}}.",
            "alternate_greetings": ["Ah, {{user}}, you made it."],
            "generation": FAST,
        },
    ).json()
    conv = client.post(f"/api/agents/{agent['id']}/conversations", json={"user_name": "Ned"})
    cid = conv.json()["id"]
    sent = client.post(f"/api/conversations/{cid}/messages", json={"content": "Is it lit?"})
    assert sent.status_code == 200, sent.text
    return cid, _messages(client, cid)


def _messages(client: TestClient, cid: str) -> list[dict]:
    resp = client.get(f"/api/conversations/{cid}/messages")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _contents(prompt: list[ChatMessage]) -> list[str]:
    return [m.content for m in prompt if m.role != "system"]


def test_a_swipe_picks_the_version_the_next_reply_reads(
    client: TestClient, prompts: list[list[ChatMessage]]
) -> None:
    cid, messages = _chat(client)
    greeting = messages[0]
    assert greeting["versions"] == ["Evening, Ned.", "Ah, Ned, you made it."]
    url = f"/api/conversations/{cid}/messages/{greeting['id']}/selected"
    picked = client.put(url, json={"index": 1})
    assert picked.status_code == 200, picked.text
    assert picked.json()["content"] == "Ah, Ned, you made it."
    assert picked.json()["selected"] == 1

    prompts.clear()
    assert client.post(f"/api/conversations/{cid}/regenerate").status_code == 200
    history = _contents(prompts[-1])
    assert history[:2] == ["Ah, Ned, you made it.", "Is it lit?"]
    assert "Evening, Ned." not in history

    assert client.put(url, json={"index": 2}).status_code == 404
    missing = f"/api/conversations/{cid}/messages/nope/selected"
    assert client.put(missing, json={"index": 0}).status_code == 404
    assert client.put(url, json={"index": -1}).status_code == 422


def test_regenerate_n_adds_three_versions_and_shows_the_last(client: TestClient) -> None:
    cid, messages = _chat(client)
    reply = messages[-1]
    resp = client.post(
        f"/api/conversations/{cid}/regenerate",
        json={"n": 3, "generation": {"temperature": 1.0, "max_new_tokens": 5}},
    )
    assert resp.status_code == 200, resp.text
    message = resp.json()["message"]
    assert message["id"] == reply["id"]
    assert len(message["versions"]) == 4
    assert message["versions"][0] == reply["content"]
    assert message["selected"] == 3
    assert message["content"] == message["versions"][3]
    assert resp.json()["usage"]["completion_tokens"] > 0
    stored = _messages(client, cid)[-1]
    assert stored["versions"] == message["versions"]
    streamed = client.post(f"/api/conversations/{cid}/regenerate", json={"n": 2, "stream": True})
    assert streamed.status_code == 422
    assert client.post(f"/api/conversations/{cid}/regenerate", json={"n": 9}).status_code == 422


def test_an_edit_is_a_new_version_and_keeps_the_old_ones(
    client: TestClient, prompts: list[list[ChatMessage]]
) -> None:
    cid, messages = _chat(client)
    user, reply = messages[1], messages[2]
    url = f"/api/conversations/{cid}/messages/{user['id']}"
    edited = client.patch(url, json={"content": "Is the lamp lit tonight?"})
    assert edited.status_code == 200, edited.text
    assert edited.json()["versions"] == ["Is it lit?", "Is the lamp lit tonight?"]
    assert edited.json()["selected"] == 1
    reply_url = f"/api/conversations/{cid}/messages/{reply['id']}"
    again = client.patch(reply_url, json={"content": "Aye, it burns."}).json()
    assert again["versions"] == [reply["content"], "Aye, it burns."]

    prompts.clear()
    client.post(f"/api/conversations/{cid}/messages", json={"content": "Good."})
    assert _contents(prompts[-1])[1:4] == ["Is the lamp lit tonight?", "Aye, it burns.", "Good."]

    assert client.patch(url, json={"content": "   "}).status_code == 422
    assert client.patch(url, json={"content": ""}).status_code == 422
    huge = client.patch(url, json={"content": "x" * (MAX_MESSAGE_CHARS + 1)})
    assert huge.status_code in (413, 422)
    assert (
        client.patch(f"/api/conversations/{cid}/messages/nope", json={"content": "a"}).status_code
        == 404
    )
    assert (
        client.patch(
            f"/api/conversations/nope/messages/{user['id']}", json={"content": "a"}
        ).status_code
        == 404
    )
    assert _messages(client, cid)[1]["versions"] == ["Is it lit?", "Is the lamp lit tonight?"]


def test_delete_one_message_or_it_and_everything_after(client: TestClient) -> None:
    cid, _ = _chat(client)
    client.post(f"/api/conversations/{cid}/messages", json={"content": "And the fog?"})
    five = _messages(client, cid)
    assert [m["role"] for m in five] == ["assistant", "user", "assistant", "user", "assistant"]

    one = client.delete(f"/api/conversations/{cid}/messages/{five[2]['id']}")
    assert one.status_code == 204
    assert [m["id"] for m in _messages(client, cid)] == [five[i]["id"] for i in (0, 1, 3, 4)]

    rest = client.delete(f"/api/conversations/{cid}/messages/{five[1]['id']}?and_after=true")
    assert rest.status_code == 204
    assert [m["id"] for m in _messages(client, cid)] == [five[0]["id"]]
    assert client.delete(f"/api/conversations/{cid}/messages/{five[1]['id']}").status_code == 404

    # The next send lands after everything that ever was: positions are never reused.
    client.post(f"/api/conversations/{cid}/messages", json={"content": "Hello again."})
    after = _messages(client, cid)
    assert [m["role"] for m in after] == ["assistant", "user", "assistant"]
    assert after[1]["position"] > five[-1]["position"]


def test_a_branch_copies_the_history_up_to_a_message_and_names_its_parent(
    client: TestClient,
) -> None:
    cid, messages = _chat(client)
    client.put(f"/api/conversations/{cid}/messages/{messages[0]['id']}/selected", json={"index": 1})
    client.post(f"/api/conversations/{cid}/messages", json={"content": "And the fog?"})
    resp = client.post(f"/api/conversations/{cid}/messages/{messages[1]['id']}/branch")
    assert resp.status_code == 201, resp.text
    branch = resp.json()
    assert branch["id"] != cid
    assert branch["parent_id"] == cid
    assert branch["parent_position"] == messages[1]["position"]
    copied = branch["messages"]
    assert [m["content"] for m in copied] == ["Ah, Ned, you made it.", "Is it lit?"]
    assert copied[0]["versions"] == messages[0]["versions"] and copied[0]["selected"] == 1
    assert {m["id"] for m in copied}.isdisjoint(m["id"] for m in messages)
    assert len(_messages(client, cid)) == 5  # the original is untouched

    listed = client.get(f"/api/agents/{branch['agent_id']}/conversations").json()
    assert {c["id"]: c["parent_id"] for c in listed}[branch["id"]] == cid
    # The branch goes on by itself.
    sent = client.post(f"/api/conversations/{branch['id']}/messages", json={"content": "Hm?"})
    assert sent.status_code == 200, sent.text
    assert len(_messages(client, branch["id"])) == 4
    assert client.post(f"/api/conversations/{cid}/messages/nope/branch").status_code == 404


def test_continue_extends_the_last_reply_in_place(
    client: TestClient, prompts: list[list[ChatMessage]]
) -> None:
    cid, messages = _chat(client)
    reply = messages[-1]
    prompts.clear()
    resp = client.post(f"/api/conversations/{cid}/continue")
    assert resp.status_code == 200, resp.text
    message = resp.json()["message"]
    assert message["id"] == reply["id"]
    assert message["content"].startswith(reply["content"])
    assert len(message["content"]) > len(reply["content"])
    assert len(message["versions"]) == 1  # extended in place, not a new version
    # The prompt ended with the reply so far, as an open assistant turn.
    assert prompts[-1][-1] == ChatMessage(role="assistant", content=reply["content"])
    after = _messages(client, cid)
    assert len(after) == 3 and after[-1]["content"] == message["content"]

    with client.stream(
        "POST", f"/api/conversations/{cid}/continue", json={"stream": True}
    ) as streamed:
        body = streamed.read().decode()
    assert "event: delta" in body and "event: done" in body


def test_continue_needs_a_reply_last(client: TestClient) -> None:
    cid, messages = _chat(client)
    client.delete(f"/api/conversations/{cid}/messages/{messages[-1]['id']}")
    resp = client.post(f"/api/conversations/{cid}/continue")
    assert resp.status_code == 422
    assert "nothing to continue" in resp.json()["error"]["message"]
    assert client.post("/api/conversations/nope/continue").status_code == 404


def test_impersonate_drafts_the_users_line_and_stores_nothing(
    client: TestClient, prompts: list[list[ChatMessage]]
) -> None:
    cid, messages = _chat(client)
    prompts.clear()
    resp = client.post(f"/api/conversations/{cid}/impersonate")
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"].strip()
    assert resp.json()["usage"]["completion_tokens"] > 0
    last = prompts[-1][-1]
    assert last.role == "system" and "Ned's next message" in last.content
    assert _messages(client, cid) == messages

    with client.stream(
        "POST", f"/api/conversations/{cid}/impersonate", json={"stream": True}
    ) as streamed:
        body = streamed.read().decode()
    assert "event: delta" in body and "event: done" in body
    assert _messages(client, cid) == messages


class _HeldModel(ScriptedBackend):
    """Failure injection: says "Hello", then waits until the test lets it finish."""

    model_name = "held"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        yield "Hello"
        self.started.set()
        self.release.wait(timeout=30)
        yield " there"


@pytest.mark.parametrize("change", ["delete", "edit"])
def test_a_delete_or_edit_while_a_reply_streams_ends_it_cleanly(
    live_server: str, services: Services, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    held = _HeldModel()
    monkeypatch.setattr(services.chat.llm, "get", lambda *a, **k: held)
    # One client for the whole test: its visitor cookie makes the chat its own.
    http = httpx.Client(base_url=live_server, timeout=60)
    agent = http.post("/api/agents", json={"name": "Ode", "description": "A poet."}).json()
    cid = http.post(f"/api/agents/{agent['id']}/conversations").json()["id"]
    result: dict[str, httpx.Response] = {}

    def send() -> None:
        result["resp"] = http.post(
            f"/api/conversations/{cid}/messages", json={"content": "Still there?"}
        )

    thread = threading.Thread(target=send)
    thread.start()
    assert held.started.wait(timeout=30)
    user = http.get(f"/api/conversations/{cid}/messages").json()[-1]
    assert user["role"] == "user"
    url = f"/api/conversations/{cid}/messages/{user['id']}"
    if change == "delete":
        assert http.delete(url).status_code == 204
    else:
        assert http.patch(url, json={"content": "Changed my mind."}).status_code == 200
    held.release.set()
    thread.join(timeout=60)
    http.close()
    resp = result["resp"]
    assert resp.status_code == 409, resp.text
    assert "edited" in resp.json()["error"]["message"]
    with services.db.session() as s:
        roles = [
            m.role
            for m in s.query(MessageRecord)
            .filter_by(conversation_id=cid)
            .order_by(MessageRecord.position)
        ]
    assert roles == ([] if change == "delete" else ["user"])


def test_the_engine_leaves_a_trailing_reply_open(services: Services) -> None:
    """What continue relies on: the bundled model's chat template, applied by the engine,
    ends a history that ends with the assistant right after that reply's text (no end of
    turn, no new turn), and starts a new assistant turn after a user message."""
    backend = services.chat.llm.get(None, None)
    backend.load()
    engine = getattr(backend.backend, "engine", None)
    if engine is None:
        pytest.skip("the bundled model runs on the transformers fallback here")
    history = [
        ChatMessage(role="system", content="You keep a lighthouse."),
        ChatMessage(role="user", content="Is it lit?"),
    ]
    tokenizer = engine._tokenizer
    reply = tokenizer.decode(
        engine.encode_chat([*history, ChatMessage(role="assistant", content="Aye, the lamp")])
    )
    assert reply.endswith("Aye, the lamp"), reply[-60:]
    fresh = tokenizer.decode(engine.encode_chat(history))
    assert fresh.rstrip().endswith("assistant"), fresh[-60:]


def test_another_browser_cannot_change_or_branch_the_chat(client: TestClient) -> None:
    agent = client.post("/api/agents", json={"name": "Mira", "first_mes": "Evening."}).json()
    cid = client.post(f"/api/agents/{agent['id']}/conversations").json()["id"]
    greeting = _messages(client, cid)[0]
    url = f"/api/conversations/{cid}/messages/{greeting['id']}"
    with TestClient(client.app) as other:  # its own visitor cookie
        changes = [
            other.put(f"{url}/selected", json={"index": 0}),
            other.patch(url, json={"content": "Mine now."}),
            other.delete(url),
            other.post(f"/api/conversations/{cid}/continue"),
            other.post(f"/api/conversations/{cid}/impersonate"),
            other.post(f"/api/conversations/{cid}/regenerate", json={"n": 2}),
        ]
        assert [r.status_code for r in changes] == [403] * len(changes), [r.text for r in changes]
        assert other.post(f"{url}/branch").status_code == 404  # it cannot even read it
    assert _messages(client, cid) == [greeting]
    mine = client.post(f"{url}/branch")
    assert mine.status_code == 201, mine.text
    assert client.get(f"/api/conversations/{mine.json()['id']}").status_code == 200
