"""Agent visibility through the API: public agents are listed to all, unlisted ones work by id
for anyone but are not listed, private ones exist only for their owner and the owner's keys.

A stranger asking for someone else's private agent gets the 404 of an id that does not exist,
on every route that takes an agent id for reading or chatting. The model is scripted: these
tests are about who sees what, not about replies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agents.llm.base import StreamResult
from agents.llm.pool import LLMPool
from agents.llm.scheduler import Lane, Scheduler, Ticket, tenant_of
from agents.schema import ChatMessage, GenerationSettings
from container import Services, build_services
from core.principal import SYSTEM
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


class _RecordingScheduler(Scheduler):
    """Remembers whose lane each request was queued in."""

    def __init__(self) -> None:
        super().__init__()
        self.tenants: list[str] = []

    def submit(self, lane: Lane, work: Any, tenant: str | None = None) -> Ticket:
        ticket = super().submit(lane, work, tenant)
        self.tenants.append(ticket.tenant)
        return ticket


@pytest.fixture(scope="module")
def vis_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    settings = fast_settings(tmp_path_factory.mktemp("visibility"), chain_mint_on_create=False)
    pool = LLMPool(settings, default=_Hello(), scheduler=_RecordingScheduler())
    svc = build_services(settings, llm=pool)
    svc.chain.start(follow=False)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def vis_app(vis_services: Services) -> FastAPI:
    from app import create_app

    return create_app(services=vis_services)


@pytest.fixture(scope="module")
def world(vis_app: FastAPI) -> dict[str, Any]:
    """Olga owns a public, an unlisted and a private agent and has an API key."""
    olga = TestClient(vis_app)
    sign_in(olga, new_wallet())
    ids = {}
    for visibility in ("public", "unlisted", "private"):
        created = olga.post(
            "/api/agents",
            json={"name": f"Olga {visibility}", "first_mes": "Hi", "visibility": visibility},
        )
        assert created.status_code == 201, created.text
        assert created.json()["visibility"] == visibility
        ids[visibility] = created.json()["id"]
    key = olga.post("/api/auth/keys", json={"name": "olga's script"})
    assert key.status_code == 201, key.text
    return {"olga": olga, "ids": ids, "key": key.json()["key"]}


def _stranger(app: FastAPI, signed_in: bool = True) -> TestClient:
    client = TestClient(app)
    if signed_in:
        sign_in(client, new_wallet())
    return client


def _listed(client: TestClient, **headers: str) -> tuple[set[str], set[str]]:
    agents = client.get("/api/agents", headers=headers)
    models = client.get("/v1/models", headers=headers)
    assert agents.status_code == 200 and models.status_code == 200
    assert int(agents.headers["X-Total-Count"]) == len(agents.json())
    return {a["id"] for a in agents.json()}, {m["id"] for m in models.json()["data"]}


def _chat(client: TestClient, agent_id: str, **headers: str) -> Any:
    return client.post(
        "/v1/chat/completions",
        json={"model": agent_id, "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )


def _reads(client: TestClient, agent_id: str, **headers: str) -> dict[str, int]:
    """The status of every read and chat route for ``agent_id``."""
    avatar = client.get(f"/api/agents/{agent_id}/avatar", headers=headers).status_code
    return {
        "agent": client.get(f"/api/agents/{agent_id}", headers=headers).status_code,
        "model": client.get(f"/v1/models/{agent_id}", headers=headers).status_code,
        "card": client.get(f"/api/agents/{agent_id}/card?format=json", headers=headers).status_code,
        # Nobody set an avatar: 404 either way; what differs is the message (checked below).
        "avatar": avatar,
        "conversation": client.post(
            f"/api/agents/{agent_id}/conversations", json={}, headers=headers
        ).status_code,
        "chat": _chat(client, agent_id, **headers).status_code,
    }


OPEN = {"agent": 200, "model": 200, "card": 200, "avatar": 404, "conversation": 201, "chat": 200}
HIDDEN = {"agent": 404, "model": 404, "card": 404, "avatar": 404, "conversation": 404, "chat": 404}


def test_strangers_see_public_agents_listed_and_unlisted_ones_by_id_only(
    vis_app: FastAPI, world: dict[str, Any]
) -> None:
    ids = world["ids"]
    for client in (_stranger(vis_app), _stranger(vis_app, signed_in=False)):
        agents, models = _listed(client)
        assert ids["public"] in agents and ids["public"] in models
        assert ids["unlisted"] not in agents and ids["unlisted"] not in models
        assert ids["private"] not in agents and ids["private"] not in models
        assert _reads(client, ids["public"]) == OPEN
        assert _reads(client, ids["unlisted"]) == OPEN


def test_a_private_agent_does_not_exist_for_strangers(
    vis_app: FastAPI, world: dict[str, Any]
) -> None:
    private = world["ids"]["private"]
    missing = "0" * 32
    for client in (_stranger(vis_app), _stranger(vis_app, signed_in=False)):
        assert _reads(client, private) == HIDDEN
        # The same answer as for an id that does not exist: nothing tells them apart.
        for path in ("/api/agents/{}", "/v1/models/{}", "/api/agents/{}/avatar"):
            hidden = client.get(path.format(private)).json()
            absent = client.get(path.format(missing)).json()
            assert hidden == _with_id(absent, missing, private), path
        assert _chat(client, private).json() == _with_id(
            _chat(client, missing).json(), missing, private
        )


def _with_id(body: Any, old: str, new: str) -> Any:
    import json

    return json.loads(json.dumps(body).replace(old, new))


def test_the_owner_and_the_owners_key_see_every_agent_of_theirs(
    vis_app: FastAPI, world: dict[str, Any]
) -> None:
    ids = world["ids"]
    olga = world["olga"]
    by_key = TestClient(vis_app)  # no session cookie: the key alone
    headers = {"Authorization": f"Bearer {world['key']}"}
    for client, extra in ((olga, {}), (by_key, headers)):
        agents, models = _listed(client, **extra)
        assert set(ids.values()) <= agents and set(ids.values()) <= models
        for visibility in ("unlisted", "private"):
            assert _reads(client, ids[visibility], **extra) == OPEN
        reply = _chat(client, ids["private"], **extra).json()
        assert reply["choices"][0]["message"]["content"] == "Hello."


def test_only_the_owner_changes_visibility(vis_app: FastAPI, world: dict[str, Any]) -> None:
    olga, ids = world["olga"], world["ids"]
    stranger = _stranger(vis_app)
    refused = stranger.patch(f"/api/agents/{ids['public']}", json={"visibility": "private"})
    assert refused.status_code in {403, 404}
    assert stranger.get(f"/api/agents/{ids['public']}").json()["visibility"] == "public"

    made = olga.patch(f"/api/agents/{ids['unlisted']}", json={"visibility": "private"})
    assert made.status_code == 200 and made.json()["visibility"] == "private"
    assert stranger.get(f"/api/agents/{ids['unlisted']}").status_code == 404
    back = olga.patch(f"/api/agents/{ids['unlisted']}", json={"visibility": "unlisted"})
    assert back.json()["visibility"] == "unlisted"
    assert stranger.get(f"/api/agents/{ids['unlisted']}").status_code == 200

    bad = olga.patch(f"/api/agents/{ids['public']}", json={"visibility": "secret"})
    assert bad.status_code == 422 and "visibility" in bad.text


def test_anonymous_drafts_cannot_be_private(vis_app: FastAPI) -> None:
    anonymous = TestClient(vis_app)
    refused = anonymous.post("/api/agents", json={"name": "Draft", "visibility": "private"})
    assert refused.status_code == 422 and "nobody owns" in refused.text
    draft = anonymous.post("/api/agents", json={"name": "Draft", "visibility": "unlisted"})
    assert draft.status_code == 201 and draft.json()["visibility"] == "unlisted"
    patched = anonymous.patch(f"/api/agents/{draft.json()['id']}", json={"visibility": "private"})
    assert patched.status_code == 422
    assert anonymous.get(f"/api/agents/{draft.json()['id']}").json()["visibility"] == "unlisted"


def test_visibility_travels_with_the_exported_card(
    vis_services: Services, world: dict[str, Any]
) -> None:
    olga = world["olga"]
    exported = olga.get(f"/api/agents/{world['ids']['private']}/card?format=json")
    assert exported.status_code == 200
    assert exported.json()["data"]["extensions"]["anima"]["visibility"] == "private"
    imported = olga.post(
        "/api/agents/import", files={"file": ("card.json", exported.content, "application/json")}
    )
    assert imported.status_code == 201 and imported.json()["visibility"] == "private"
    # Imported by nobody, a private card becomes unlisted: a private draft nobody could see.
    anonymous = vis_services.agents.import_card("card.json", exported.content, principal=SYSTEM)
    assert anonymous.owner_address is None and anonymous.visibility == "unlisted"


def test_requests_wait_in_the_callers_own_lane(
    vis_app: FastAPI, vis_services: Services, world: dict[str, Any]
) -> None:
    """The scheduler's tenant is the caller: by key, by session, or the browser's visitor lane,
    on /v1 and when a stored conversation gets a reply."""
    scheduler = vis_services.llm.scheduler
    assert isinstance(scheduler, _RecordingScheduler)
    public = world["ids"]["public"]
    by_key = vis_services.auth.principal(api_key=world["key"])
    olga = world["olga"]
    key = {"Authorization": f"Bearer {world['key']}"}
    assert _chat(TestClient(vis_app), public, **key).status_code == 200
    assert _chat(TestClient(vis_app), public).status_code == 200
    # A caller without a key or session waits in its browser's lane (the visitor cookie).
    assert scheduler.tenants[-2] == tenant_of(by_key)
    assert scheduler.tenants[-1].startswith("visitor:")
    scheduler.tenants.clear()
    conversation = olga.post(f"/api/agents/{public}/conversations", json={}).json()
    sent = olga.post(f"/api/conversations/{conversation['id']}/messages", json={"content": "hi"})
    assert sent.status_code == 200, sent.text
    assert by_key.address is not None
    assert scheduler.tenants == [f"wallet:{by_key.address.lower()}"]
