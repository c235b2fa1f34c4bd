"""Personas over the REST API: CRUD, the default, avatars, privacy between wallets, and a
chat that speaks as one."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from agents.llm.pool import LLMPool
from container import Services, build_services
from tests.chain.helpers import fast_settings, new_wallet, sign_in


def _png(size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def _agent(client: TestClient) -> dict:
    resp = client.post(
        "/api/agents",
        json={
            "name": "Mira",
            "description": "{{char}} keeps the lighthouse.",
            "first_mes": "Evening, {{user}}.",
            "generation": {"max_new_tokens": 8, "temperature": 0.0},
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_persona_crud_default_and_avatar(client: TestClient) -> None:
    assert client.get("/api/personas").json() == []
    first = client.post("/api/personas", json={"name": "Kit", "description": "A stowaway."})
    assert first.status_code == 201, first.text
    kit = first.json()
    assert kit["is_default"] is True  # the first persona is the default
    ned = client.post("/api/personas", json={"name": "Ned", "is_default": True}).json()
    listed = {p["name"]: p["is_default"] for p in client.get("/api/personas").json()}
    assert listed == {"Kit": False, "Ned": True}

    made = client.post(f"/api/personas/{kit['id']}/default")
    assert made.status_code == 200 and made.json()["is_default"] is True
    assert client.get(f"/api/personas/{ned['id']}").json()["is_default"] is False

    patched = client.patch(f"/api/personas/{kit['id']}", json={"description": "A navigator."})
    assert patched.json()["description"] == "A navigator." and patched.json()["name"] == "Kit"

    assert client.get(f"/api/personas/{kit['id']}/avatar").status_code == 404
    put = client.put(
        f"/api/personas/{kit['id']}/avatar", files={"file": ("a.png", _png(), "image/png")}
    )
    assert put.status_code == 200 and put.json()["has_avatar"] is True
    got = client.get(f"/api/personas/{kit['id']}/avatar")
    assert got.headers["content-type"] == "image/png" and got.content == _png()

    assert client.delete(f"/api/personas/{ned['id']}").status_code == 204
    assert client.get(f"/api/personas/{ned['id']}").status_code == 404
    assert [p["name"] for p in client.get("/api/personas").json()] == ["Kit"]


def test_bad_persona_input_is_refused(client: TestClient) -> None:
    assert client.post("/api/personas", json={"name": ""}).status_code == 422
    assert client.post("/api/personas", json={"name": "x" * 101}).status_code == 422
    long = client.post("/api/personas", json={"name": "Kit", "description": "d" * 8001})
    assert long.status_code == 422
    kit = client.post("/api/personas", json={"name": "Kit"}).json()
    assert client.patch(f"/api/personas/{kit['id']}", json={"name": ""}).status_code == 422
    not_image = client.put(
        f"/api/personas/{kit['id']}/avatar", files={"file": ("a.png", b"not an image", "image/png")}
    )
    assert not_image.status_code == 422
    huge = client.put(
        f"/api/personas/{kit['id']}/avatar",
        files={"file": ("a.png", b"\0" * 4_000_001, "image/png")},
    )
    assert huge.status_code == 413
    assert client.get("/api/personas/nope").status_code == 404
    assert client.get("/api/personas/../etc").status_code == 404


@pytest.mark.model
def test_a_chat_speaks_as_its_persona(client: TestClient) -> None:
    agent = _agent(client)
    kit = client.post(
        "/api/personas", json={"name": "Kit", "description": "{{user}} walks with a limp."}
    ).json()
    # No persona named: the caller's default (Kit, the first one) is used.
    conv = client.post(f"/api/agents/{agent['id']}/conversations", json={"user_name": "Ann"})
    assert conv.status_code == 201, conv.text
    assert conv.json()["persona_id"] == kit["id"]
    assert conv.json()["messages"][0]["content"] == "Evening, Kit."
    prompt = client.get(f"/api/conversations/{conv.json()['id']}/prompt").json()
    assert "Kit walks with a limp." in prompt["messages"][0]["content"]

    unknown = client.post(f"/api/agents/{agent['id']}/conversations", json={"persona_id": "0" * 32})
    assert unknown.status_code == 404
    # Dropping the persona: {{user}} is the chat's own user name again.
    cid = conv.json()["id"]
    cleared = client.patch(f"/api/conversations/{cid}", json={"persona_id": None})
    assert cleared.status_code == 200 and cleared.json()["persona_id"] is None
    prompt = client.get(f"/api/conversations/{cid}/prompt").json()
    assert "Ann" in prompt["messages"][0]["content"]
    assert "limp" not in prompt["messages"][0]["content"]


@pytest.fixture(scope="module")
def wallet_app(tmp_path_factory: pytest.TempPathFactory, llm_pool: LLMPool) -> Iterator[FastAPI]:
    from app import create_app

    data: Path = tmp_path_factory.mktemp("persona-wallets")
    svc: Services = build_services(fast_settings(data), llm=llm_pool)
    svc.chain.start(follow=False)
    yield create_app(services=svc)
    svc.close()


def test_one_wallets_personas_are_invisible_to_another(wallet_app: FastAPI) -> None:
    alice, bob, anonymous = TestClient(wallet_app), TestClient(wallet_app), TestClient(wallet_app)
    sign_in(alice, new_wallet())
    sign_in(bob, new_wallet())
    mine = alice.post("/api/personas", json={"name": "Alice's", "description": "secret"}).json()
    assert mine["is_default"] is True
    bobs = bob.post("/api/personas", json={"name": "Bob's"}).json()
    assert bobs["is_default"] is True  # each owner has a default of their own

    assert [p["name"] for p in alice.get("/api/personas").json()] == ["Alice's"]
    assert [p["name"] for p in bob.get("/api/personas").json()] == ["Bob's"]
    assert anonymous.get("/api/personas").json() == []
    pid = mine["id"]
    for other in (bob, anonymous):
        assert other.get(f"/api/personas/{pid}").status_code == 404
        assert other.patch(f"/api/personas/{pid}", json={"name": "x"}).status_code == 404
        assert other.post(f"/api/personas/{pid}/default").status_code == 404
        assert other.delete(f"/api/personas/{pid}").status_code == 404
        assert other.get(f"/api/personas/{pid}/avatar").status_code == 404
    assert alice.get(f"/api/personas/{pid}").json()["name"] == "Alice's"
