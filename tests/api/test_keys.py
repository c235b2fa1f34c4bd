"""Scoped API keys with limits, used as a developer would: the ``openai`` package (and plain
HTTP where headers matter) against a served app on the bundled toy model.

Every refusal is checked for its status, its OpenAI error body and for leaving nothing behind
(a refused request is not metered).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from agents.llm.base import StreamResult
from agents.llm.pool import LLMPool
from agents.schema import ChatMessage, GenerationSettings
from container import Services, build_services
from tests.chain.helpers import fast_settings, new_wallet, sign_in
from tests.fake_backends import ScriptedBackend
from tests.servers import serve_app
from tests.waiting import wait_until
from usage.records import UsageRecord

pytestmark = pytest.mark.model

ASK = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def keys_services(
    tmp_path_factory: pytest.TempPathFactory, llm_pool: LLMPool
) -> Iterator[Services]:
    svc = build_services(fast_settings(tmp_path_factory.mktemp("keys-data")), llm=llm_pool)
    svc.chain.start(follow=False)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def keys_app(keys_services: Services) -> FastAPI:
    from app import create_app

    return create_app(services=keys_services)


@pytest.fixture(scope="module")
def server(keys_app: FastAPI) -> Iterator[str]:
    with serve_app(keys_app) as url:
        yield url


@pytest.fixture(scope="module")
def owner(keys_app: FastAPI) -> TestClient:
    """A signed-in wallet (a browser session) that owns two agents."""
    client = TestClient(keys_app)
    sign_in(client, new_wallet())
    return client


@pytest.fixture(scope="module")
def agents(owner: TestClient) -> list[str]:
    made = [
        owner.post("/api/agents", json={"name": name, "description": "A baker."})
        for name in ("Bram", "Tilde")
    ]
    assert all(r.status_code == 201 for r in made) and len(made) == 2, [r.text for r in made]
    return [r.json()["id"] for r in made]


def new_key(owner: TestClient, **limits: Any) -> dict[str, Any]:
    created = owner.post("/api/auth/keys", json={"name": "test", **limits})
    assert created.status_code == 201, created.text
    return created.json()


def openai_client(server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0, timeout=120)


def chat(server: str, key: str, model: str, max_tokens: int = 4) -> Any:
    client = openai_client(server, key)
    return client.chat.completions.create(
        model=model, messages=ASK, max_tokens=max_tokens, temperature=0
    )


def metered(services: Services, key_id: str) -> int:
    services.usage.flush()
    with services.db.session() as s:
        return s.scalar(select(func.count()).where(UsageRecord.key_id == key_id)) or 0


def assert_openai_error(response: httpx.Response | Any, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert (error["type"], error["code"]) == (kind, status)


# ----- creating, listing, viewing ---------------------------------------------------------------


def test_a_key_is_created_with_limits_listed_and_shows_its_use(
    owner: TestClient, agents: list[str], server: str, keys_services: Services
) -> None:
    key = new_key(
        owner,
        scopes=["chat"],
        allowed_agents=[agents[0]],
        rpm=50,
        budget_tokens=100_000,
        budget_period="day",
    )
    assert key["key"].startswith("anima_")
    assert key["limits"]["scopes"] == ["chat"] and key["limits"]["rpm"] == 50
    listed = {k["id"]: k for k in owner.get("/api/auth/keys").json()}
    assert listed[key["id"]]["limits"]["allowed_agents"] == [agents[0]]
    assert "key" not in listed[key["id"]]  # the key itself is shown once

    reply = chat(server, key["key"], agents[0])
    assert reply.usage is not None and reply.usage.total_tokens > 0
    view = owner.get(f"/api/auth/keys/{key['id']}").json()
    usage = view["usage"]
    assert usage["requests_this_minute"] == 1
    assert usage["tokens_this_period"] == reply.usage.total_tokens
    assert usage["remaining_budget"] == 100_000 - reply.usage.total_tokens
    assert usage["remaining_requests_this_minute"] == 49
    assert usage["remaining_streams"] is None  # no such limit
    assert metered(keys_services, key["id"]) == 1

    changed = owner.patch(f"/api/auth/keys/{key['id']}", json={"rpm": None, "tpm": 1000})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["limits"]["rpm"], changed.json()["limits"]["tpm"]) == (None, 1000)
    bad = owner.patch(f"/api/auth/keys/{key['id']}", json={"scopes": ["root"]})
    assert bad.status_code == 422, bad.text
    # Someone else's key is nobody's business.
    stranger = TestClient(owner.app)
    sign_in(stranger, new_wallet())
    assert stranger.get(f"/api/auth/keys/{key['id']}").status_code == 404
    assert stranger.patch(f"/api/auth/keys/{key['id']}", json={"rpm": 1}).status_code == 404


# ----- scopes and agents -------------------------------------------------------------------------


def test_a_chat_key_cannot_change_an_agent_and_a_manage_key_can(
    owner: TestClient, agents: list[str], server: str
) -> None:
    chat_key = new_key(owner, scopes=["chat"])["key"]
    manage_key = new_key(owner, scopes=["manage"])["key"]
    patch = {"name": "Bram the Grumpy"}

    refused = httpx.patch(
        f"{server}/api/agents/{agents[0]}", json=patch, headers={"X-API-Key": chat_key}
    )
    assert_openai_error(refused, 403, "ScopeError")
    assert "'manage'" in refused.json()["error"]["message"]
    allowed = httpx.patch(
        f"{server}/api/agents/{agents[0]}", json=patch, headers={"X-API-Key": manage_key}
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["name"] == patch["name"]

    # Chatting needs "chat"; managing keys needs "admin".
    assert chat(server, chat_key, agents[0]).choices[0].message.content is not None
    with pytest.raises(openai.PermissionDeniedError):
        chat(server, manage_key, agents[0])
    keys = httpx.get(f"{server}/api/auth/keys", headers={"X-API-Key": chat_key})
    assert_openai_error(keys, 403, "ScopeError")


def test_a_key_limited_to_one_agent_is_refused_on_another(
    owner: TestClient, agents: list[str], server: str, keys_services: Services
) -> None:
    key = new_key(owner, allowed_agents=[agents[0]])
    assert chat(server, key["key"], agents[0]).usage is not None
    with pytest.raises(openai.PermissionDeniedError) as refused:
        chat(server, key["key"], agents[1])
    assert agents[1] in str(refused.value)
    # Conversations too: the conversation's agent decides.
    other = owner.post(f"/api/agents/{agents[1]}/conversations").json()["id"]
    sent = httpx.post(
        f"{server}/api/conversations/{other}/messages",
        json={"content": "Hi"},
        headers={"X-API-Key": key["key"]},
    )
    assert_openai_error(sent, 403, "ScopeError")
    messages = owner.get(f"/api/conversations/{other}/messages").json()
    assert messages == []  # the refused message was not stored
    assert metered(keys_services, key["id"]) == 1


# ----- expiry and revocation ---------------------------------------------------------------------


def test_expired_and_revoked_keys_are_401(
    owner: TestClient, agents: list[str], server: str
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=2)
    expiring = new_key(owner, expires_at=soon.isoformat())
    me = httpx.get(f"{server}/api/auth/me", headers={"X-API-Key": expiring["key"]})
    assert me.status_code == 200 and me.json()["via"] == "api_key"
    expired = wait_until(
        lambda: (
            r
            if (
                r := httpx.get(f"{server}/api/auth/me", headers={"X-API-Key": expiring["key"]})
            ).status_code
            == 401
            else None
        ),
        timeout=10,
        message="the key to expire",
    )
    assert_openai_error(expired, 401, "AuthError")
    assert "expired" in expired.json()["error"]["message"]
    past = owner.post("/api/auth/keys", json={"expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422

    revoked = new_key(owner)
    assert chat(server, revoked["key"], agents[0]).usage is not None
    assert owner.delete(f"/api/auth/keys/{revoked['id']}").status_code == 204
    with pytest.raises(openai.AuthenticationError):
        chat(server, revoked["key"], agents[0])


# ----- rates, streams, budgets -------------------------------------------------------------------


def test_requests_per_minute_answer_429_with_retry_after_and_rate_headers(
    owner: TestClient, agents: list[str], server: str
) -> None:
    key = new_key(owner, rpm=2)["key"]
    headers = {"X-API-Key": key}
    first = httpx.get(f"{server}/v1/models", headers=headers)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert httpx.get(f"{server}/v1/models", headers=headers).status_code == 200
    refused = httpx.get(f"{server}/v1/models", headers=headers)
    assert_openai_error(refused, 429, "RateLimitError")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(openai.RateLimitError):
        chat(server, key, agents[0])


class _HeldModel(ScriptedBackend):
    """Says "Hello", then waits until the test lets it go on."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def stream(
        self, messages: list[ChatMessage], params: GenerationSettings, result: Any = None
    ) -> Iterator[str]:
        if isinstance(result, StreamResult):
            result.prompt_tokens, result.completion_tokens = 3, 2
        yield "Hello"
        self.started.set()
        self.release.wait(timeout=30)
        yield " there"


def test_an_open_stream_holds_its_slot_until_it_ends(
    owner: TestClient,
    agents: list[str],
    server: str,
    keys_services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = _HeldModel()
    monkeypatch.setattr(keys_services.chat.llm, "get", lambda model=None, adapter=None: held)
    key = new_key(owner, max_streams=1)
    body = {"model": agents[0], "messages": ASK, "stream": True, "max_tokens": 4}
    headers = {"Authorization": f"Bearer {key['key']}"}
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", f"{server}/v1/chat/completions", json=body, headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert held.started.wait(timeout=30)
        second = httpx.post(f"{server}/v1/chat/completions", json=body, headers=headers)
        assert_openai_error(second, 429, "RateLimitError")
        assert second.headers["retry-after"] == "1"
        # The client goes away mid-reply (the stream is closed unread); then the model ends.
    held.release.set()

    def accepted() -> bool:
        return chat(server, key["key"], agents[0]).choices[0].message.content is not None

    wait_until(lambda: _try(accepted), timeout=30, message="the slot to be free after the stream")
    # The refused request was not metered; the completed one and the stream its client
    # abandoned were (the abandoned one as "cancelled", with what it generated).
    wait_until(lambda: metered(keys_services, key["id"]) >= 2, timeout=30, message="metering")
    assert metered(keys_services, key["id"]) == 2
    with keys_services.db.session() as s:
        outcomes = sorted(
            s.scalars(select(UsageRecord.outcome).where(UsageRecord.key_id == key["id"]))
        )
    assert outcomes == ["cancelled", "ok"]


def _try(call: Any) -> Any:
    try:
        return call()
    except openai.RateLimitError:
        return None


def test_a_spent_budget_answers_402_and_meters_nothing(
    owner: TestClient, agents: list[str], server: str, keys_services: Services
) -> None:
    key = new_key(owner, budget_tokens=5, budget_period="day")
    first = chat(server, key["key"], agents[0], max_tokens=2)
    assert first.usage is not None and first.usage.total_tokens > 5  # the prompt alone is more
    with pytest.raises(openai.APIStatusError) as refused:
        chat(server, key["key"], agents[0])
    assert refused.value.status_code == 402
    error = refused.value.body
    if isinstance(error, dict) and "error" in error:
        error = error["error"]
    assert isinstance(error, dict) and error["type"] == "BudgetExceededError"
    assert f"used {first.usage.total_tokens} of its 5 tokens this day" in error["message"]
    assert metered(keys_services, key["id"]) == 1
    view = owner.get(f"/api/auth/keys/{key['id']}").json()["usage"]
    assert (view["remaining_budget"], view["tokens_this_period"]) == (
        0,
        first.usage.total_tokens,
    )
    # Raising the budget lets the key go on at once.
    owner.patch(f"/api/auth/keys/{key['id']}", json={"budget_tokens": 100_000})
    assert chat(server, key["key"], agents[0]).usage is not None


def test_a_limit_too_large_to_store_is_a_422_and_no_key_is_made(owner: TestClient) -> None:
    before = owner.get("/api/auth/keys").json()
    for field in ("rpm", "tpm", "max_streams"):
        resp = owner.post("/api/auth/keys", json={"name": "big", field: 2**31})
        assert resp.status_code == 422, resp.text
    resp = owner.post("/api/auth/keys", json={"name": "big", "budget_tokens": 2**63})
    assert resp.status_code == 422, resp.text
    assert owner.get("/api/auth/keys").json() == before
