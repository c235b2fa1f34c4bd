"""``/api/models`` against real models: a llama.cpp server (xllamacpp, in-process, on
127.0.0.1) added as an OpenAI-compatible connection, and the bundled GGUF added as a local
one; an agent switched to each answers through it, and the default model switches without a
restart.

The app's own default model here is a scripted backend that always says ``DEFAULT_REPLY``, so
a reply that is anything else came through the connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agents.llm.model_source import bundled_gguf_path
from agents.llm.openai_backend import OpenAICompatBackend
from agents.llm.pool import LLMPool
from container import Services, build_services
from tests.chain.helpers import fast_settings, new_wallet, sign_in
from tests.fake_backends import ScriptedBackend
from tests.llama_server import serve_bundled_model

pytestmark = pytest.mark.model

SERVER_KEY = "sk-e2e-secret-7741"
DEFAULT_REPLY = "the app's default model answered"
SHORT = {"max_new_tokens": 12, "temperature": 0.0}


class DefaultBackend(ScriptedBackend):
    model_name = "default"

    def stream(self, messages, params, result=None):  # type: ignore[no-untyped-def]
        yield DEFAULT_REPLY


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    with serve_bundled_model(SERVER_KEY) as url:
        yield url


@pytest.fixture(scope="module")
def models_services(
    tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path
) -> Iterator[Services]:
    settings = fast_settings(
        tmp_path_factory.mktemp("models-data"),
        model_cache_dir=model_cache_dir,
        model_dirs=str(bundled_gguf_path().parent),  # the operator allows this folder
        llm_engine="llamacpp",
        llm_parallel=1,
        llm_kv_tokens=2048,
    )
    pool = LLMPool(settings, default=DefaultBackend())
    svc = build_services(settings, llm=pool)
    svc.chain.start(follow=False)
    yield svc
    svc.close()
    for engine in pool._engines.values():
        engine.unload()


@pytest.fixture(scope="module")
def app(models_services: Services) -> FastAPI:
    from app import create_app

    return create_app(services=models_services)


@pytest.fixture(scope="module")
def operator(app: FastAPI) -> TestClient:
    client = TestClient(app)
    sign_in(client, new_wallet())
    return client


def _reply(client: TestClient, agent_id: str, text: str = "Hello! Who are you?") -> Any:
    conv = client.post(f"/api/agents/{agent_id}/conversations", json={})
    assert conv.status_code == 201, conv.text
    return client.post(
        f"/api/conversations/{conv.json()['id']}/messages",
        json={"content": text, "generation": SHORT},
    )


def _connections(client: TestClient) -> dict[str, Any]:
    answer = client.get("/api/models")
    assert answer.status_code == 200, answer.text
    return {c["name"]: c for c in answer.json()["connections"]}


def test_bad_input_gets_a_4xx_and_a_failed_test_saves_nothing(
    app: FastAPI, operator: TestClient, llama_server: str
) -> None:
    anonymous = TestClient(app)
    body = {"name": "llama", "kind": "openai", "base_url": llama_server, "api_key": SERVER_KEY}
    assert anonymous.post("/api/models/connections", json=body).status_code == 401
    assert anonymous.put("/api/models/default", json={"model": None}).status_code == 401
    assert anonymous.get("/api/models").status_code == 200  # anyone picks a model from it

    refused = [
        ({**body, "kind": "ftp"}, "kind"),
        ({**body, "base_url": "ftp://127.0.0.1/v1"}, "base URL"),
        ({**body, "name": "Not A Name"}, "connection name"),
        ({**body, "api_key": "sk-wrong"}, "HTTP 401"),  # the server's own answer, shown
        ({**body, "base_url": llama_server.replace("/v1", "/nothing")}, "HTTP 404"),
        ({"name": "disk", "kind": "local", "path": "/etc/passwd"}, "ANIMA_MODEL_DIRS"),
        ({"name": "disk", "kind": "local", "path": "../../etc"}, "may be loaded from"),
        ({"name": "disk", "kind": "local", "path": "a\u0000b"}, "file or folder name"),
        ({**body, "base_url": "https://127.0.0.1:99999/v1"}, "did not answer"),
    ]
    for payload, said in refused:
        answer = operator.post("/api/models/connections", json=payload)
        assert answer.status_code == 422, (payload, answer.text)
        assert said in answer.text, answer.text
        tested = operator.post("/api/models/test", json=payload)
        assert tested.status_code == 422, tested.text
    assert _connections(operator) == {}
    assert operator.delete("/api/models/connections/nothing").status_code == 404
    assert operator.put("/api/models/default", json={"model": "conn:nothing/x"}).status_code == 422


def test_a_real_server_and_a_local_gguf_serve_agents_without_a_restart(
    operator: TestClient, models_services: Services, llama_server: str
) -> None:
    body = {"name": "llama", "kind": "openai", "base_url": llama_server, "api_key": SERVER_KEY}
    tested = operator.post("/api/models/test", json=body)
    assert tested.status_code == 200, tested.text
    assert tested.json()["models"] == ["smollm2"]
    assert _connections(operator) == {}  # a test saves nothing
    added = operator.post("/api/models/connections", json=body)
    assert added.status_code == 201, added.text
    assert added.json()["api_key"] == "set" and added.json()["refs"] == ["conn:llama/smollm2"]
    listed = operator.get("/api/models")
    assert SERVER_KEY not in listed.text and SERVER_KEY not in added.text
    assert _connections(operator)["llama"]["models"] == ["smollm2"]

    agent = operator.post("/api/agents", json={"name": "Mira", "description": "A kind guide."})
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["id"]
    first = _reply(operator, agent_id)
    assert first.status_code == 200, first.text
    assert first.json()["message"]["content"] == DEFAULT_REPLY

    # The agent is switched to the server's model: its next reply comes from the server.
    switched = operator.patch(f"/api/agents/{agent_id}", json={"model": "conn:llama/smollm2"})
    assert switched.status_code == 200, switched.text
    served = _reply(operator, agent_id)
    assert served.status_code == 200, served.text
    text = served.json()["message"]["content"]
    assert text.strip() and text != DEFAULT_REPLY
    backend = models_services.llm.get("conn:llama/smollm2").backend
    assert isinstance(backend, OpenAICompatBackend) and backend.base_url == llama_server

    # The default model switches at run time: an agent without a model now uses the server.
    other = operator.post("/api/agents", json={"name": "Tam"}).json()["id"]
    made_default = operator.put("/api/models/default", json={"model": "conn:llama/smollm2"})
    assert made_default.status_code == 200, made_default.text
    assert made_default.json()["default"] == "conn:llama/smollm2"
    by_default = _reply(operator, other)
    assert by_default.status_code == 200, by_default.text
    assert by_default.json()["message"]["content"] != DEFAULT_REPLY

    # A local GGUF (the bundled model's file, in a folder the operator allowed), in-process.
    gguf = bundled_gguf_path()
    local = operator.post(
        "/api/models/connections", json={"name": "smol", "kind": "local", "path": str(gguf)}
    )
    assert local.status_code == 201, local.text
    assert local.json()["details"]["architecture"] == "llama"
    ref = f"conn:smol/{gguf.name}"
    assert operator.patch(f"/api/agents/{agent_id}", json={"model": ref}).status_code == 200
    in_process = _reply(operator, agent_id)
    assert in_process.status_code == 200, in_process.text
    assert in_process.json()["message"]["content"].strip() not in ("", DEFAULT_REPLY)
    assert not isinstance(models_services.llm.get(ref).backend, OpenAICompatBackend)

    # Deleting the server's connection puts the settings' default back for agents without a
    # model; an agent that still names it is told what to do.
    assert operator.delete("/api/models/connections/llama").status_code == 204
    assert operator.get("/api/models").json()["default"] is None
    assert _reply(operator, other).json()["message"]["content"] == DEFAULT_REPLY
    named = operator.patch(f"/api/agents/{agent_id}", json={"model": "conn:llama/smollm2"})
    assert named.status_code == 200, named.text
    gone = _reply(operator, agent_id)
    assert gone.status_code == 422 and "no model connection named 'llama'" in gone.text
