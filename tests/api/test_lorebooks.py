"""Lorebook editing over the REST API: entry CRUD, bulk enable/disable, the RE2 check, world-info
books imported and exported losslessly, attached to two agents, and refused to non-owners."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agents.llm.pool import LLMPool
from agents.prompt import build_prompt
from agents.schema import ChatMessage
from container import Services, build_services
from tests.chain.helpers import fast_settings, new_wallet, sign_in

WORLD_INFO: dict[str, Any] = {
    "entries": {
        "0": {
            "uid": 0,
            "key": ["lighthouse", "beacon"],
            "keysecondary": ["storm"],
            "comment": "The lighthouse",
            "content": "The lighthouse has been dark since the wreck.",
            "constant": False,
            "vectorized": False,
            "selective": True,
            "selectiveLogic": 2,
            "addMemo": True,
            "order": 50,
            "position": 4,
            "disable": False,
            "excludeRecursion": False,
            "preventRecursion": True,
            "delayUntilRecursion": False,
            "probability": 80,
            "useProbability": True,
            "depth": 2,
            "group": "coast",
            "groupOverride": False,
            "groupWeight": 100,
            "scanDepth": None,
            "caseSensitive": None,
            "matchWholeWords": True,
            "automationId": "",
            "role": 0,
            "sticky": 3,
            "cooldown": None,
            "delay": None,
            "displayIndex": 0,
            "characterFilter": {"isExclude": False, "names": [], "tags": []},
        },
        "7": {
            "uid": 7,
            "key": ["/gull(s)?/i"],
            "keysecondary": [],
            "comment": "",
            "content": "Gulls steal bread from the harbour.",
            "constant": True,
            "order": 100,
            "position": 1,
            "disable": True,
        },
    },
    "name": "Coast lore",
    "originalData": {"kept": [1, 2]},
}


def _agent(client: TestClient, name: str = "Mira", first_mes: str = "Evening.") -> str:
    resp = client.post(
        "/api/agents",
        json={"name": name, "description": "{{char}} keeps watch.", "first_mes": first_mes},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _upload(client: TestClient, body: Any, name: str = "coast.json", **form: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/api/lorebooks", files={"file": (name, raw, "application/json")}, data=form or None
    )


def test_entry_crud_search_and_bulk(client: TestClient) -> None:
    aid = _agent(client)
    base = f"/api/agents/{aid}/lorebook"
    assert client.get(f"{base}/entries").json() == []
    made = client.post(
        f"{base}/entries",
        json={"keys": [" harbour ", ""], "content": "The harbour froze.", "comment": "Harbour"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["keys"] == ["harbour"] and made.json()["index"] == 0
    second = client.post(f"{base}/entries", json={"keys": ["tower"], "content": "Old tower."})
    assert second.json()["index"] == 1

    patched = client.patch(
        f"{base}/entries/0",
        json={
            "secondary_keys": ["ice"],
            "selective_logic": 3,
            "position": "after_char",
            "depth": 2,
            "order": 7,
            "probability": 40,
            "constant": True,
        },
    )
    assert patched.status_code == 200, patched.text
    got = client.get(f"{base}/entries/0").json()
    assert got["secondary_keys"] == ["ice"] and got["selective"] is True
    assert (got["selective_logic"], got["position"], got["depth"]) == (3, "after_char", 2)
    assert (got["order"], got["probability"], got["constant"]) == (7, 40, True)
    assert got["content"] == "The harbour froze."  # untouched fields stay
    card_entry = client.get(f"/api/agents/{aid}").json()["data"]["character_book"]["entries"][0]
    assert card_entry["insertion_order"] == 7 and card_entry["position"] == "after_char"
    assert card_entry["extensions"]["selectiveLogic"] == 3
    assert card_entry["extensions"]["position"] == 1  # what SillyTavern reads

    found = client.get(f"{base}/entries", params={"q": "TOWER"}).json()
    assert [e["index"] for e in found] == [1]
    assert [e["index"] for e in client.get(f"{base}/entries", params={"q": "froze"}).json()] == [0]

    copied = client.post(f"{base}/entries/0/duplicate")
    assert copied.status_code == 201 and copied.json()["index"] == 1
    assert copied.json()["comment"] == "Harbour (copy)"
    assert len(client.get(f"{base}/entries").json()) == 3

    off = client.post(f"{base}/enabled", json={"indexes": [0, 2], "enabled": False})
    assert off.status_code == 200 and [e["enabled"] for e in off.json()] == [False, False]
    states = [e["enabled"] for e in client.get(f"{base}/entries").json()]
    assert states == [False, True, False]
    client.post(f"{base}/enabled", json={"indexes": [0], "enabled": True})
    assert client.get(f"{base}/entries/0").json()["enabled"] is True

    assert client.delete(f"{base}/entries/1").status_code == 204
    assert [e["keys"] for e in client.get(f"{base}/entries").json()] == [["harbour"], ["tower"]]
    left = client.post(f"{base}/delete", json={"indexes": [0, 1]})
    assert left.status_code == 200 and left.json() == {"entries": 0}


def test_bad_input_gets_a_clear_4xx(client: TestClient) -> None:
    aid = _agent(client)
    base = f"/api/agents/{aid}/lorebook"
    client.post(f"{base}/entries", json={"keys": ["a"], "content": "x"})
    bad = client.patch(f"{base}/entries/0", json={"keys": ["/(a)\\1/"]})
    assert bad.status_code == 422
    assert (
        "RE2" in bad.json()["error"]["message"]
        and "backreferences" in bad.json()["error"]["message"]
    )
    bad_flag = client.patch(f"{base}/entries/0", json={"keys": ["(?<=x)y"], "use_regex": True})
    assert bad_flag.status_code == 422 and "RE2" in bad_flag.json()["error"]["message"]
    assert client.get(f"{base}/entries/0").json()["keys"] == ["a"]  # nothing stored
    assert client.patch(f"{base}/entries/0", json={"probability": 101}).status_code == 422
    assert client.patch(f"{base}/entries/0", json={"selective_logic": 9}).status_code == 422
    assert client.patch(f"{base}/entries/0", json={"position": "nowhere"}).status_code == 422
    assert client.get(f"{base}/entries/5").status_code == 404
    assert client.post(f"{base}/entries/5/duplicate").status_code == 404
    assert client.post(f"{base}/enabled", json={"indexes": [], "enabled": True}).status_code == 422
    assert client.get("/api/agents/nope/lorebook/entries").status_code == 404

    assert _upload(client, b"{not json").status_code == 422
    assert _upload(client, {"no": "entries"}).status_code == 422
    assert _upload(client, WORLD_INFO, name="coast.png").status_code == 422
    with_bad_regex = copy.deepcopy(WORLD_INFO)
    with_bad_regex["entries"]["0"]["key"] = ["/(?!x)y/"]
    refused = _upload(client, with_bad_regex)
    assert refused.status_code == 422 and "RE2" in refused.json()["error"]["message"]
    assert client.get("/api/lorebooks").json() == []


def test_world_info_round_trip_is_lossless(client: TestClient) -> None:
    made = _upload(client, WORLD_INFO)
    assert made.status_code == 201, made.text
    book = made.json()
    assert (book["name"], book["entries"]) == ("Coast lore", 2)
    exported = client.get(f"/api/lorebooks/{book['id']}")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"].endswith("Coast%20lore.json")
    assert exported.json() == WORLD_INFO

    # The card's own book exports as world info too, and reads back as the same entries.
    aid = _agent(client)
    base = f"/api/agents/{aid}/lorebook"
    client.post(f"{base}/entries", json={"keys": ["moon"], "content": "The moon is red."})
    own = client.get(f"{base}/world-info").json()
    entry = own["entries"]["0"]
    assert (entry["key"], entry["content"], entry["disable"]) == (
        ["moon"],
        "The moon is red.",
        False,
    )
    again = _upload(client, own, name="own.json").json()
    assert client.get(f"/api/lorebooks/{again['id']}").json() == own


def test_a_book_attached_to_two_agents_fires_in_both_prompts(
    client: TestClient, services: Services
) -> None:
    first = _agent(client, "Mira", "The beacon is out tonight, and a storm is coming.")
    second = _agent(client, "Oren", "Have you seen the beacon?")
    book = _upload(client, WORLD_INFO, agent_id=first).json()
    attached = client.put(f"/api/agents/{second}/lorebooks/{book['id']}")
    assert attached.status_code == 200, attached.text
    assert attached.json()["agent_ids"] == sorted([first, second])
    assert [b["id"] for b in client.get(f"/api/agents/{first}/lorebooks").json()] == [book["id"]]

    def lore_in_prompt(agent_id: str, history: str) -> bool:
        _agent, card = services.chat._agent_card(agent_id)
        built = build_prompt(
            card.data,
            [ChatMessage(role="assistant", content=history)],
            user_name="Ann",
            count_tokens=lambda text: len(text.split()),
            context_window=2048,
            max_new_tokens=16,
        )
        return "dark since the wreck" in built.messages[0].content

    # NOT ANY on "storm": the first agent's chat names the storm, the second's does not.
    assert not lore_in_prompt(first, "The beacon is out tonight, and a storm is coming.")
    assert lore_in_prompt(first, "The beacon is out tonight.")
    assert lore_in_prompt(second, "Have you seen the beacon?")
    assert not lore_in_prompt(second, "Have you seen the harbour?")
    # The stored card is untouched: the attached entries join only the prompt.
    assert client.get(f"/api/agents/{second}/lorebook/entries").json() == []

    assert client.delete(f"/api/agents/{second}/lorebooks/{book['id']}").status_code == 204
    assert not lore_in_prompt(second, "Have you seen the beacon?")
    assert client.delete(f"/api/agents/{second}/lorebooks/{book['id']}").status_code == 404
    assert client.delete(f"/api/lorebooks/{book['id']}").status_code == 204
    assert not lore_in_prompt(first, "The beacon is out tonight.")
    assert client.get(f"/api/agents/{first}/lorebooks").json() == []


@pytest.mark.model
def test_the_conversation_prompt_shows_an_attached_books_entry(client: TestClient) -> None:
    aid = _agent(client, "Mira", "The beacon is out tonight.")
    _upload(client, WORLD_INFO, agent_id=aid)
    conv = client.post(f"/api/agents/{aid}/conversations", json={"user_name": "Ann"})
    assert conv.status_code == 201, conv.text
    prompt = client.get(f"/api/conversations/{conv.json()['id']}/prompt").json()
    assert "dark since the wreck" in prompt["messages"][0]["content"]


@pytest.fixture(scope="module")
def wallet_app(tmp_path_factory: pytest.TempPathFactory, llm_pool: LLMPool) -> Iterator[FastAPI]:
    from app import create_app

    data: Path = tmp_path_factory.mktemp("lorebook-wallets")
    svc: Services = build_services(fast_settings(data), llm=llm_pool)
    svc.chain.start(follow=False)
    yield create_app(services=svc)
    svc.close()


def test_only_the_owner_edits(wallet_app: FastAPI) -> None:
    alice, bob, anonymous = TestClient(wallet_app), TestClient(wallet_app), TestClient(wallet_app)
    sign_in(alice, new_wallet())
    sign_in(bob, new_wallet())
    aid = _agent(alice)
    base = f"/api/agents/{aid}/lorebook"
    assert alice.post(f"{base}/entries", json={"keys": ["a"], "content": "x"}).status_code == 201
    book = _upload(alice, WORLD_INFO).json()
    bobs_agent = _agent(bob, "Bobby")
    for other in (bob, anonymous):
        assert other.post(f"{base}/entries", json={"keys": ["b"]}).status_code in (401, 403)
        assert other.patch(f"{base}/entries/0", json={"content": "y"}).status_code in (401, 403)
        assert other.delete(f"{base}/entries/0").status_code in (401, 403)
        assert other.post(f"{base}/entries/0/duplicate").status_code in (401, 403)
        refused = other.post(f"{base}/enabled", json={"indexes": [0], "enabled": False})
        assert refused.status_code in (401, 403)
        assert other.put(f"/api/agents/{aid}/lorebooks/{book['id']}").status_code in (401, 403)
        assert other.get(f"/api/lorebooks/{book['id']}").status_code == 404
        assert other.delete(f"/api/lorebooks/{book['id']}").status_code == 404
        assert other.get("/api/lorebooks").json() == []
    # Bob cannot attach Alice's book to his own agent either: he cannot see it.
    assert bob.put(f"/api/agents/{bobs_agent}/lorebooks/{book['id']}").status_code == 404
    entries = alice.get(f"{base}/entries").json()
    assert [(e["keys"], e["content"], e["enabled"]) for e in entries] == [(["a"], "x", True)]
    assert [b["id"] for b in alice.get("/api/lorebooks").json()] == [book["id"]]


def test_an_edit_keeps_every_field_it_does_not_change(client: TestClient) -> None:
    imported = {
        "keys": ["forest"],
        "content": "The forest is ancient.",
        "extensions": {"position": 4, "depth": 4, "weird": [1], "sticky": 2},
        "enabled": True,
        "insertion_order": 100,
        "case_sensitive": False,
        "name": "Forest",
        "priority": 10,
        "id": 0,
        "selective": True,
        "secondary_keys": ["trees"],
        "entry_level_unknown": {"keep": "me"},
    }
    resp = client.post(
        "/api/agents", json={"name": "Sera", "character_book": {"entries": [imported]}}
    )
    aid = resp.json()["id"]
    # The full editor sends every field; only the content really changed.
    shown = client.get(f"/api/agents/{aid}/lorebook/entries/0").json()
    shown.pop("index")
    patched = client.patch(
        f"/api/agents/{aid}/lorebook/entries/0", json={**shown, "content": "It is young."}
    )
    assert patched.status_code == 200, patched.text
    card = client.get(f"/api/agents/{aid}/card", params={"format": "json"}).json()
    exported = card["data"]["character_book"]["entries"][0]
    # V3 export fills the spec's ``use_regex`` default; everything else is as imported.
    assert exported == {**imported, "content": "It is young.", "use_regex": False}
