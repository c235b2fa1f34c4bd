"""``POST /api/agents/{id}/prompt-preview``: who may preview what, and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agents.llm.base import StreamResult
from agents.llm.pool import LLMPool
from agents.schema import ChatMessage, GenerationSettings
from container import Services, build_services
from tests.chain.helpers import fast_settings, new_wallet, sign_in
from tests.fake_backends import ScriptedBackend


class _Hello(ScriptedBackend):
    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        yield "Hello."


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    from app import create_app

    settings = fast_settings(tmp_path / "data", chain_mint_on_create=False)
    svc: Services = build_services(settings, llm=LLMPool(settings, default=_Hello()))
    svc.chain.start(follow=False)
    yield create_app(services=svc)
    svc.close()


@pytest.fixture
def olga(app: FastAPI) -> TestClient:
    client = TestClient(app)
    sign_in(client, new_wallet())
    return client


def _agent(client: TestClient, visibility: str = "public") -> str:
    book = {"entries": [{"keys": ["lamp"], "content": "The lamp is old.", "name": "Lamp"}]}
    created = client.post(
        "/api/agents",
        json={
            "name": "Mira",
            "description": "{{char}} keeps the lighthouse.",
            "character_book": book,
            "visibility": visibility,
        },
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _preview(client: TestClient, agent_id: str, **body: Any) -> Any:
    return client.post(f"/api/agents/{agent_id}/prompt-preview", json=body)


def test_anyone_who_may_chat_previews_a_public_agent(app: FastAPI, olga: TestClient) -> None:
    agent_id = _agent(olga)
    answer = _preview(TestClient(app), agent_id, message="is the lamp lit?")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(e["name"], e["key"]) for e in body["lore_fired"]] == [("Lamp", "lamp")]
    assert body["parts"][-1] == {
        "kind": "message",
        "label": "Your message",
        "message": 1,
        "role": "user",
        "text": "is the lamp lit?",
        "tokens": 4 + 6,
        "pinned": False,
        "key": None,
    }
    assert body["context_window"] == 2048 and body["rendered"] is None


def test_drafts_are_the_owners_and_private_agents_stay_hidden(
    app: FastAPI, olga: TestClient
) -> None:
    agent_id = _agent(olga)
    draft = {"description": "{{char}} sails."}
    mine = _preview(olga, agent_id, message="hi", draft=draft)
    assert mine.status_code == 200 and "Mira sails." in mine.json()["messages"][0]["content"]

    ivan = TestClient(app)
    sign_in(ivan, new_wallet())
    assert _preview(ivan, agent_id, message="hi", draft=draft).status_code == 403
    assert _preview(TestClient(app), agent_id, message="hi", draft=draft).status_code == 401

    private = _agent(olga, "private")
    assert _preview(olga, private, message="hi").status_code == 200
    assert _preview(ivan, private, message="hi").status_code == 404


def test_someone_elses_conversation_is_not_found(app: FastAPI, olga: TestClient) -> None:
    agent_id = _agent(olga)
    conv = olga.post(f"/api/agents/{agent_id}/conversations").json()["id"]
    assert _preview(olga, agent_id, message="hi", conversation_id=conv).status_code == 200
    ivan = TestClient(app)
    sign_in(ivan, new_wallet())
    assert _preview(ivan, agent_id, message="hi", conversation_id=conv).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": ""},
        {"message": "   "},
        {"message": "x" * 40_000},
        {"message": "hi", "draft": {"colour": "red"}},
        {"message": "hi", "draft": {"name": 5}},
        {"message": "hi", "draft": "not an object"},
        {"message": "hi", "generation": {"temperature": "hot"}},
    ],
)
def test_bad_input_is_a_422_with_a_message(olga: TestClient, body: dict[str, Any]) -> None:
    agent_id = _agent(olga)
    answer = _preview(olga, agent_id, **body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"]


def test_a_missing_agent_or_conversation_is_a_404(olga: TestClient) -> None:
    assert _preview(olga, "no-such-agent", message="hi").status_code == 404
    agent_id = _agent(olga)
    assert _preview(olga, agent_id, message="hi", conversation_id="nope").status_code == 404
