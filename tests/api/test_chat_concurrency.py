"""Concurrent writes to conversations, and smaller chat defects (deletes mid-reply, history
that fits the window, oversized messages, stop sequences, model names).

Sends race each other through a real server (uvicorn's thread pool, SQLite in WAL). What is
under test is the conversation store, so where a test must control the reply (answer each
message in a recognisable way, or hold a reply open while the test deletes the
conversation) it swaps in a scripted model: failure injection, not a stand-in for the store.
The history test keeps the real bundled tokenizer, since what it counts is tokenisation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from agents.llm.base import Completion, LLMBackend, StreamResult
from agents.llm.pool import LLMPool
from agents.records import ConversationRecord, MessageRecord
from agents.schema import ChatMessage, GenerationSettings
from container import Services, build_services
from core.errors import ValidationError
from core.principal import SYSTEM
from core.settings import Settings
from tests.fake_backends import ScriptedBackend

TINY = {"max_new_tokens": 3, "temperature": 0.0}


def _conversation(services: Services, **generation: Any) -> str:
    agent = services.agents.create_agent(
        {"name": "Ode", "description": "A terse poet.", "generation": generation or TINY},
        principal=SYSTEM,
    )
    conv = services.chat.create_conversation(agent.id, principal=SYSTEM)
    return conv.id  # no greeting: starts empty


class _EchoModel(ScriptedBackend):
    """Scripted model: "re: <the user's message>", after a pause that makes replies overlap."""

    model_name = "echo"
    context_window = 4096

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        last = next(m.content for m in reversed(messages) if m.role == "user")
        time.sleep(0.05)
        yield "re: "
        time.sleep(0.05)
        yield last


def test_20_concurrent_sends_give_40_messages_in_send_order(
    live_server: str, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = _conversation(services)
    echo = _EchoModel()
    monkeypatch.setattr(services.chat.llm, "get", lambda model_=None, adapter=None: echo)

    def send(i: int) -> dict[str, Any]:
        with httpx.Client(timeout=300) as http:
            resp = http.post(
                f"{live_server}/api/conversations/{conv}/messages",
                json={"content": f"message number {i}"},
            )
        assert resp.status_code == 200, resp.text
        return resp.json()["message"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(send, range(20)))

    messages = httpx.get(f"{live_server}/api/conversations/{conv}/messages").json()
    assert len(messages) == 40
    positions = [m["position"] for m in messages]
    assert len(set(positions)) == 40 and positions == sorted(positions)
    # Send order: each user message is followed directly by the reply to it.
    assert [m["role"] for m in messages] == ["user", "assistant"] * 20
    for asked, answer in zip(messages[::2], messages[1::2], strict=True):
        assert answer["content"] == f"re: {asked['content']}"
    where = {m["content"]: m["position"] for m in messages if m["role"] == "user"}
    for i, reply in enumerate(replies):
        assert reply["position"] == where[f"message number {i}"] + 1, i
    # The counter stays ahead of every stored position.
    with services.db.session() as s:
        assert s.get(ConversationRecord, conv).next_position == 40


class _HeldModel(ScriptedBackend):
    """Failure injection: says "Hello", then waits until the test lets it finish."""

    model_name = "held"
    context_window = 2048

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


@pytest.fixture
def held(services: Services, monkeypatch: pytest.MonkeyPatch) -> _HeldModel:
    model = _HeldModel()
    monkeypatch.setattr(services.chat.llm, "get", lambda model_=None, adapter=None: model)
    return model


def test_deleting_a_conversation_mid_stream_ends_with_an_error_frame(
    live_server: str, services: Services, held: _HeldModel
) -> None:
    conv = _conversation(services)
    events: list[tuple[str, dict[str, Any]]] = []
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST",
            f"{live_server}/api/conversations/{conv}/messages",
            json={"content": "Still there?", "stream": True},
        ) as resp,
    ):
        assert resp.status_code == 200
        kind = "message"
        for line in resp.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if kind == "delta" and len(events) == 1:
                    assert http.delete(f"{live_server}/api/conversations/{conv}").status_code == 204
                    held.release.set()
    assert events[0] == ("delta", {"text": "Hello"})
    kind, data = events[-1]
    assert kind == "error", events
    assert "deleted" in data["message"]
    assert httpx.get(f"{live_server}/api/conversations/{conv}").status_code == 404


def test_deleting_a_conversation_mid_reply_is_a_409_not_a_500(
    live_server: str, services: Services, held: _HeldModel
) -> None:
    conv = _conversation(services)
    result: dict[str, httpx.Response] = {}

    def send() -> None:
        result["resp"] = httpx.post(
            f"{live_server}/api/conversations/{conv}/messages",
            json={"content": "Still there?"},
            timeout=60,
        )

    thread = threading.Thread(target=send)
    thread.start()
    assert held.started.wait(timeout=30)
    assert httpx.delete(f"{live_server}/api/conversations/{conv}").status_code == 204
    held.release.set()
    thread.join(timeout=60)
    resp = result["resp"]
    assert resp.status_code == 409, resp.text
    assert "deleted" in resp.json()["error"]["message"]
    with services.db.session() as s:
        assert s.query(MessageRecord).filter_by(conversation_id=conv).count() == 0


class _SmallWindow:
    """The real bundled tokenizer behind a 1024-token window, counting what it tokenises.

    The reply itself is scripted: generating it would only cost time here."""

    context_window = 1024

    def __init__(self, real: LLMBackend) -> None:
        self.real = real
        self.counted: list[str] = []
        self.model_name = real.model_name

    def count_tokens(self, text: str) -> int:
        self.counted.append(text)
        return self.real.count_tokens(text)

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        return iter(["Then the tide went out."])

    def complete(self, *args: Any, **kwargs: Any) -> Completion:
        return self.real.complete(*args, **kwargs)


@pytest.mark.model
def test_a_reply_reads_only_the_history_that_fits_the_context(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = _conversation(services)
    with services.db.session() as s:
        for i in range(2000):
            s.add(
                MessageRecord(
                    id=f"m{i:05d}",
                    conversation_id=conv,
                    position=i,
                    role="user" if i % 2 == 0 else "assistant",
                    content=f"line {i}: the tide came in and the gulls argued about bread",
                    versions=[f"line {i}: the tide came in and the gulls argued about bread"],
                )
            )
        s.get(ConversationRecord, conv).next_position = 2000
    model = _SmallWindow(services.llm.get())
    monkeypatch.setattr(services.chat.llm, "get", lambda model_=None, adapter=None: model)
    loaded: list[str] = []

    def on_load(target: MessageRecord, _context: Any) -> None:
        loaded.append(target.id)

    event.listen(MessageRecord, "load", on_load)
    try:
        resp = client.post(f"/api/conversations/{conv}/messages", json={"content": "And then?"})
    finally:
        event.remove(MessageRecord, "load", on_load)
    assert resp.status_code == 200, resp.text
    history = {t for t in model.counted if t.startswith("line ")}
    assert 20 < len(history) < 200, len(history)  # what fits 1024 tokens, not 2000 lines
    assert len(loaded) < 250, len(loaded)
    assert "line 1999:" in " ".join(history)  # the newest turns are the ones kept
    assert resp.json()["message"]["position"] == 2001


def test_v1_refuses_an_oversized_message_before_the_model(
    client: TestClient, services: Services
) -> None:
    agent = services.agents.create_agent({"name": "Limit"}, principal=SYSTEM)
    resp = client.post(
        "/v1/chat/completions",
        json={"model": agent.id, "messages": [{"role": "user", "content": "x" * 40_000}]},
    )
    assert resp.status_code == 422, resp.text
    assert "32000 characters" in resp.json()["error"]["message"]


def test_anima_stop_survives_four_client_stops_on_the_openai_backend(tmp_path: Path) -> None:
    from http.server import ThreadingHTTPServer

    from app import create_app
    from tests.agents.test_llm import _SSEHandler

    handler = type("Handler", (_SSEHandler,), {"requests": [], "disconnected": threading.Event()})
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    settings = Settings(
        data_dir=tmp_path / "data",
        llm_backend="openai",
        openai_base_url=f"http://127.0.0.1:{upstream.server_address[1]}/v1",
        llm_preload=False,
        allowed_hosts="testserver",
    )
    services = build_services(settings)
    try:
        agent = services.agents.create_agent({"name": "Relay"}, principal=SYSTEM)
        with TestClient(create_app(services=services)) as client:
            resp = client.post(
                "/v1/chat/completions",
                json={
                    "model": agent.id,
                    "messages": [{"role": "user", "content": "Hi"}],
                    "stop": ["\nA:", "\nB:", "\nC:", " the"],
                    "user": "Ned",
                },
            )
        assert resp.status_code == 200, resp.text
        sent = handler.requests[0]["body"]["stop"]
        assert sent[0] == "\nNed:" and len(sent) == 4  # Anima's own stop is never dropped
        # The fourth client stop did not fit the server's four: it is applied here.
        assert resp.json()["choices"][0]["message"]["content"] == "Hello"
    finally:
        services.close()
        upstream.shutdown()
        upstream.server_close()


def test_agent_model_names_never_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.llm.model_source import resolve_model
    from core.errors import BackendError

    settings = Settings(data_dir=tmp_path / "data", llm_preload=False)
    settings.ensure_dirs()
    cwd = tmp_path / "cwd"
    (cwd / "org" / "name").mkdir(parents=True)
    (cwd / "org" / "name" / "config.json").write_text("{}")
    (cwd / "stray").mkdir()
    (cwd / "stray" / "config.json").write_text("{}")
    monkeypatch.chdir(cwd)
    pool = LLMPool(settings)
    with pytest.raises(ValidationError, match="<data_dir>/models"):
        pool.get("stray")
    hub = pool.get("org/name")
    with pytest.raises(BackendError, match="not found locally"):
        resolve_model(hub.settings)  # the hub (offline here), not ./org/name
