"""``/api/agents/{id}/finetunes`` and ``/adapters`` over HTTP: bad input gets a clear 4xx and
starts nothing; runs, metrics and versions of really trained adapters read and switch."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agents.llm.pool import LLMPool
from container import build_services
from core.settings import Settings
from tests.agents.finetune_world import FinetuneWorld, pirate_examples


@pytest.fixture
def enqueue_only(settings: Settings, llm_pool: LLMPool) -> Iterator[TestClient]:
    """The app as a web process that only enqueues (jobs run on workers): no training here."""
    services = build_services(settings.model_copy(update={"jobs_run_in_app": False}), llm=llm_pool)
    from app import create_app

    with TestClient(create_app(services=services)) as client:
        yield client  # the app's lifespan closes the services


def _chat_file(n: int) -> bytes:
    lines = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": "Arr!"},
            ]
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(line) for line in lines).encode()


def _error(response: object) -> str:
    return response.json()["error"]["message"]  # type: ignore[attr-defined]


def test_bad_requests_get_clear_errors_and_start_nothing(
    enqueue_only: TestClient,
) -> None:
    client = enqueue_only
    agent = client.post(
        "/api/agents", json={"name": "Brine", "mes_example": pirate_examples(2)}
    ).json()
    base = f"/api/agents/{agent['id']}"

    too_few = client.post(f"{base}/finetunes")
    assert too_few.status_code == 422
    assert "at least 8 dialogues" in _error(too_few) and "has 2" in _error(too_few)
    bad_file = client.post(f"{base}/finetunes", files={"chats": ("bad.jsonl", b'{"role": 1}')})
    assert bad_file.status_code == 422 and "bad.jsonl line 1" in _error(bad_file)
    for settings, expected in (
        ("{not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"lora_r": 0}', "settings.lora_r"),
        ('{"epochs": 1, "surprise": true}', "settings.surprise"),
    ):
        response = client.post(f"{base}/finetunes", data={"settings": settings})
        assert response.status_code == 422, settings
        assert expected in _error(response), (settings, _error(response))
    assert client.post("/api/agents/nope/finetunes").status_code == 404
    assert client.get(f"{base}/finetunes").json() == []
    assert client.get("/api/jobs", params={"agent_id": agent["id"]}).json() == []
    assert client.get(f"{base}/adapters").json() == []
    assert client.post(f"{base}/adapters/rollback").status_code == 409
    assert client.post(f"{base}/adapters/nope/activate").status_code == 404
    assert client.delete(f"{base}/adapters/nope").status_code == 404
    assert client.get(f"{base}/finetunes/nope/metrics").status_code == 404

    preview = client.post(f"{base}/finetunes/preview", files={"chats": ("c.jsonl", _chat_file(3))})
    assert preview.status_code == 200
    assert preview.json()["by_source"] == {"examples": 2, "greetings": 0, "chats": 3}
    assert "Add 3 more" in preview.json()["notes"][-1]


def test_a_run_starts_with_uploaded_chats_and_cancels(
    enqueue_only: TestClient,
) -> None:
    client = enqueue_only
    agent = client.post("/api/agents", json={"name": "Brine"}).json()
    base = f"/api/agents/{agent['id']}"
    started = client.post(
        f"{base}/finetunes",
        data={"settings": json.dumps({"max_steps": 3, "lora_r": 4})},
        files=[("chats", ("a.jsonl", _chat_file(5))), ("chats", ("b.jsonl", _chat_file(4)))],
    )
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["stage"] == "queued" and run["version"] == 1
    assert run["data"]["by_source"]["chats"] == 9 and run["settings"]["lora_r"] == 4
    assert run["job"]["kind"] == "agents.finetune" and run["job"]["target_id"] == agent["id"]
    assert client.get(f"/api/jobs/{run['job']['id']}").json()["status"] == "queued"
    again = client.post(f"{base}/finetunes", files={"chats": ("a.jsonl", _chat_file(9))})
    assert again.status_code == 409

    cancelled = client.post(f"{base}/finetunes/{run['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["stage"] == "cancelled"
    assert cancelled.json()["job"]["status"] == "cancelled"
    assert client.post(f"{base}/finetunes/{run['id']}/cancel").status_code == 409
    assert [r["id"] for r in client.get(f"{base}/finetunes").json()] == [run["id"]]
    second = client.post(f"{base}/finetunes", files={"chats": ("a.jsonl", _chat_file(9))})
    assert second.status_code == 202 and second.json()["version"] == 2


@pytest.mark.model
def test_runs_metrics_and_versions_of_trained_adapters(finetune_world: FinetuneWorld) -> None:
    from app import create_app

    world = finetune_world
    client = TestClient(create_app(services=world.services))  # no lifespan: services stay open
    base = f"/api/agents/{world.robot.id}"
    [run] = client.get(f"{base}/finetunes").json()
    assert run["stage"] == "ready" and run["job"]["status"] == "succeeded"
    assert run["adapter"]["name"] == world.robot_v1.adapter_name
    metrics = client.get(f"{base}/finetunes/{run['id']}/metrics").json()
    assert [p["step"] for p in metrics["loss"]] == [1, 2, 3, 4, 5, 6]
    assert metrics["eval"]["after"]["perplexity"] < metrics["eval"]["before"]["perplexity"]
    assert metrics["training"]["device"] in ("cpu", "cuda")

    name = world.robot_v1.adapter_name
    client.post(f"{base}/adapters/deactivate")
    activated = client.post(f"{base}/adapters/{name}/activate")
    assert activated.status_code == 200 and activated.json()["adapter"] == name
    [listed] = client.get(f"{base}/adapters").json()
    assert listed["active"] and listed["compatible"] and listed["size_bytes"] > 100_000
    assert client.delete(f"{base}/adapters/{name}").status_code == 409
    other = f"/api/agents/{world.pirate.id}/adapters/{name}/activate"
    assert client.post(other).status_code == 404  # the robot's adapter is not the pirate's
    assert client.post(f"{base}/adapters/rollback").json()["adapter"] is None
    assert client.post(f"{base}/adapters/{name}/activate").json()["adapter"] == name
