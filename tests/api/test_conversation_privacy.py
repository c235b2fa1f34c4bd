"""Private conversations over the API: a chat is seen and changed only by whoever started it.

Each ``TestClient`` is one browser (its own cookie jar, so its own ``anima_visitor`` cookie).
Wallets sign in with Ethereum as a browser wallet would. Replies come from a scripted model:
what is checked here is who may do what, not what the model says.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agents.llm.base import StreamResult
from agents.llm.pool import LLMPool
from agents.schema import ChatMessage, GenerationSettings
from container import Services, build_services
from core.principal import SYSTEM
from core.settings import Settings
from core.visitor import VISITOR_COOKIE
from tests.chain.helpers import fast_settings, new_wallet, sign_in
from tests.fake_backends import ScriptedBackend


class _Echo(ScriptedBackend):
    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        yield "re: " + next(m.content for m in reversed(messages) if m.role == "user")


@pytest.fixture(scope="module")
def privacy_services(
    tmp_path_factory: pytest.TempPathFactory, llm_pool: LLMPool
) -> Iterator[Services]:
    data = tmp_path_factory.mktemp("privacy-data")
    svc = build_services(fast_settings(data, chain_mint_on_create=False), llm=llm_pool)
    svc.chain.start(follow=False)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def app(privacy_services: Services) -> FastAPI:
    from app import create_app

    return create_app(services=privacy_services)


@pytest.fixture(autouse=True)
def _echo_model(privacy_services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    echo = _Echo()
    monkeypatch.setattr(privacy_services.chat.llm, "get", lambda model=None, adapter=None: echo)


def _browser(app: FastAPI) -> TestClient:
    """A new browser: its first request gets it a visitor cookie."""
    client = TestClient(app)
    assert client.get("/api/auth/me").status_code == 200
    assert client.cookies.get(VISITOR_COOKIE)
    return client


def _agent(client: TestClient) -> str:
    resp = client.post("/api/agents", json={"name": "Mira", "first_mes": "Evening, {{user}}."})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _chat(client: TestClient, agent_id: str) -> dict[str, Any]:
    resp = client.post(f"/api/agents/{agent_id}/conversations", json={"user_name": "Ned"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def _listed(client: TestClient, agent_id: str, **kw: Any) -> set[str]:
    resp = client.get(f"/api/agents/{agent_id}/conversations", **kw)
    assert resp.status_code == 200, resp.text
    return {c["id"] for c in resp.json()}


def _send(client: TestClient, conv_id: str, text: str = "hello", **kw: Any) -> Any:
    return client.post(f"/api/conversations/{conv_id}/messages", json={"content": text}, **kw)


def _refused_everything(stranger: TestClient, agent_id: str, conv_id: str, **kw: Any) -> None:
    """``stranger`` can neither list, read, send to, regenerate nor delete the chat."""
    assert conv_id not in _listed(stranger, agent_id, **kw)
    for path in (f"/api/conversations/{conv_id}", f"/api/conversations/{conv_id}/messages"):
        assert stranger.get(path, **kw).status_code == 404  # as if it did not exist
    for resp in (
        _send(stranger, conv_id, **kw),
        stranger.post(f"/api/conversations/{conv_id}/regenerate", **kw),
        stranger.delete(f"/api/conversations/{conv_id}", **kw),
    ):
        assert resp.status_code == 403, resp.text
        assert "belongs to another" in resp.json()["error"]["message"]


def test_two_browsers_never_see_each_others_chats(app: FastAPI) -> None:
    ann, bob = _browser(app), _browser(app)
    assert ann.cookies.get(VISITOR_COOKIE) != bob.cookies.get(VISITOR_COOKIE)
    agent = _agent(ann)
    mine = _chat(ann, agent)
    assert (mine["shared"], mine["owner_address"]) == (False, None)
    assert _send(ann, mine["id"]).json()["message"]["content"] == "re: hello"
    theirs = _chat(bob, agent)

    assert _listed(ann, agent) == {mine["id"]}
    assert _listed(bob, agent) == {theirs["id"]}
    _refused_everything(bob, agent, mine["id"])
    _refused_everything(ann, agent, theirs["id"])
    # The owner still has everything, and may delete it.
    assert len(ann.get(f"/api/conversations/{mine['id']}/messages").json()) == 3
    assert ann.post(f"/api/conversations/{mine['id']}/regenerate").status_code == 200
    assert ann.delete(f"/api/conversations/{mine['id']}").status_code == 204
    assert _listed(ann, agent) == set()


def test_the_visitor_cookie_is_signed_httponly_lax_and_its_key_private(
    app: FastAPI, privacy_services: Services
) -> None:
    resp = TestClient(app).get("/api/auth/me")
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith(f"{VISITOR_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=" in cookie
    key = privacy_services.settings.data_dir / "visitor.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # A browser with a valid cookie is not issued another one.
    client = _browser(app)
    assert "set-cookie" not in client.get("/api/auth/me").headers


def test_a_tampered_cookie_gets_a_fresh_identity_and_no_access(app: FastAPI) -> None:
    ann = _browser(app)
    agent = _agent(ann)
    conv = _chat(ann, agent)["id"]
    visitor_id, _, signature = ann.cookies[VISITOR_COOKIE].partition(".")
    forged_values = [
        f"{visitor_id}.{'A' * len(signature)}",  # her id, a made-up signature
        f"{visitor_id}.",  # her id, no signature
        visitor_id,  # her id alone
    ]
    for forged in forged_values:
        headers = {"Cookie": f"{VISITOR_COOKIE}={forged}"}
        stranger = TestClient(app, cookies=None)
        resp = stranger.get(f"/api/conversations/{conv}", headers=headers)
        assert resp.status_code == 404
        fresh = resp.headers["set-cookie"].split(";")[0].partition("=")[2]
        assert fresh.partition(".")[0] != visitor_id
        assert conv not in _listed(TestClient(app), agent, headers=headers)
        refused = TestClient(app).delete(f"/api/conversations/{conv}", headers=headers)
        assert refused.status_code == 403
    assert ann.get(f"/api/conversations/{conv}").status_code == 200  # still hers


def test_two_wallets_never_see_each_others_chats_and_the_agents_owner_sees_none(
    app: FastAPI,
) -> None:
    owner, ann, bob = _browser(app), _browser(app), _browser(app)
    sign_in(owner, new_wallet())
    wallet_a = new_wallet()
    sign_in(ann, wallet_a)
    sign_in(bob, new_wallet())
    agent = _agent(owner)  # the agent belongs to the owner's wallet
    hers = _chat(ann, agent)
    assert hers["owner_address"] == wallet_a.address
    theirs = _chat(bob, agent)
    _refused_everything(bob, agent, hers["id"])
    _refused_everything(ann, agent, theirs["id"])
    _refused_everything(owner, agent, hers["id"])
    _refused_everything(owner, agent, theirs["id"])
    assert _listed(owner, agent) == set()
    # The wallet reaches its chat from any browser it signs in with.
    elsewhere = _browser(app)
    sign_in(elsewhere, wallet_a)
    assert _listed(elsewhere, agent) == {hers["id"]}
    assert _send(elsewhere, hers["id"], "from my laptop").status_code == 200


def test_an_api_key_sees_its_wallets_chats(app: FastAPI) -> None:
    ann = _browser(app)
    sign_in(ann, new_wallet())
    agent = _agent(ann)
    hers = _chat(ann, agent)["id"]
    key = ann.post("/api/auth/keys", json={"name": "ci"}).json()["key"]
    headers = {"X-API-Key": key}
    script = TestClient(app)  # no browser: a program with the wallet's key
    assert _listed(script, agent, headers=headers) == {hers}
    assert _send(script, hers, "via the API", headers=headers).status_code == 200
    made = script.post(f"/api/agents/{agent}/conversations", headers=headers).json()["id"]
    assert _listed(ann, agent) == {hers, made}
    # The same program without its key is a stranger.
    _refused_everything(TestClient(app), agent, hers)


def test_a_visitors_chats_move_to_the_wallet_on_sign_in(app: FastAPI) -> None:
    ann, wallet = _browser(app), new_wallet()
    agent = _agent(ann)
    before = {_chat(ann, agent)["id"], _chat(ann, agent)["id"]}
    assert sign_in(ann, wallet)["conversations_moved"] == 2
    assert _listed(ann, agent) == before
    # Signed in from a new browser (a new cookie jar): the chats follow the wallet.
    laptop = _browser(app)
    assert _listed(laptop, agent) == set()
    assert sign_in(laptop, wallet)["conversations_moved"] == 0
    assert _listed(laptop, agent) == before
    conv = next(iter(before))
    assert _send(laptop, conv).status_code == 200
    # They are the wallet's now: the old browser signed out no longer owns them.
    assert ann.post("/api/auth/logout").status_code == 204
    _refused_everything(ann, agent, conv)


def test_a_local_wallet_takes_the_chats_of_the_browser_it_is_created_in(app: FastAPI) -> None:
    ann = _browser(app)
    agent = _agent(ann)
    conv = _chat(ann, agent)["id"]
    made = ann.post("/api/auth/local-wallets", json={"password": "correct horse"})
    assert made.status_code == 201, made.text
    assert made.json()["conversations_moved"] == 1
    address = made.json()["address"]
    assert ann.get(f"/api/conversations/{conv}").json()["owner_address"] == address


def test_chats_from_before_owners_are_shared_until_claimed(
    app: FastAPI, privacy_services: Services
) -> None:
    ann, bob = _browser(app), _browser(app)
    agent = _agent(ann)
    # Started before conversations recorded an owner (as after the migration): no owner.
    old = privacy_services.chat.create_conversation(agent, principal=SYSTEM).id
    for client in (ann, bob):
        listed = client.get(f"/api/agents/{agent}/conversations").json()
        assert [(c["id"], c["shared"]) for c in listed] == [(old, True)]
    assert _send(bob, old, "still open").status_code == 200

    claimed = ann.post(f"/api/conversations/{old}/claim")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["shared"] is False
    assert ann.post(f"/api/conversations/{old}/claim").status_code == 200  # already hers
    refused = bob.post(f"/api/conversations/{old}/claim")
    assert refused.status_code == 403 and "already belongs" in refused.json()["error"]["message"]
    _refused_everything(bob, agent, old)
    assert _listed(ann, agent) == {old}


def test_the_shared_setting_shows_every_chat_to_every_visitor(
    app: FastAPI, privacy_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, bob = _browser(app), _browser(app)
    agent = _agent(ann)
    conv = _chat(ann, agent)["id"]
    assert _listed(bob, agent) == set()
    monkeypatch.setattr(privacy_services.chat.access, "mode", "shared")
    assert _listed(bob, agent) == {conv}
    assert _send(bob, conv, "one machine, one person").status_code == 200
    # The owner is still recorded: back to private, the chat is Ann's again.
    monkeypatch.setattr(privacy_services.chat.access, "mode", "private")
    assert _listed(bob, agent) == set() and _listed(ann, agent) == {conv}


def test_the_setting_is_read_from_anima_conversations(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, privacy_services: Services
) -> None:
    assert privacy_services.chat.access.mode == "private"  # the default
    monkeypatch.setenv("ANIMA_CONVERSATIONS", "shared")
    assert Settings(data_dir=tmp_path).auth.conversations == "shared"
    monkeypatch.setenv("ANIMA_CONVERSATIONS", "public")
    with pytest.raises(ValueError, match="ANIMA_CONVERSATIONS"):
        Settings(data_dir=tmp_path)


def test_a_retrieval_trace_is_read_only_by_the_chats_owner(app: FastAPI) -> None:
    ann, bob = _browser(app), _browser(app)
    agent = _agent(ann)
    conv = _chat(ann, agent)
    greeting = conv["messages"][0]["id"]
    # The greeting has no trace: its owner hears that; a stranger hears nothing of it.
    assert "no retrieval trace" in ann.get(f"/api/messages/{greeting}/trace").text
    stranger = bob.get(f"/api/messages/{greeting}/trace")
    assert stranger.status_code == 404 and "no message" in stranger.json()["error"]["message"]
