"""Chat files over the REST API: a SillyTavern chat imports and goes on, export and import
round trip, and bad files are refused with nothing stored."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from agents.records import ConversationRecord, MessageRecord
from container import Services

FAST = {"max_new_tokens": 6, "temperature": 0.0}

# A group chat as SillyTavern writes it: a header line, then one line per message; two
# characters speak, one message has three swipes with the second shown.
SILLYTAVERN_CHAT = [
    {
        "user_name": "Ned",
        "character_name": "Mira",
        "create_date": "2026-11-30@19h02m11s",
        "chat_metadata": {"note_prompt": "Keep it short.", "note_depth": 2, "note_interval": 1},
    },
    {
        "name": "Mira",
        "is_user": False,
        "is_system": False,
        "send_date": "November 30, 2026 7:02pm",
        "mes": "Evening, Ned. Storm's coming.",
        "extra": {},
        "swipe_id": 0,
        "swipes": ["Evening, Ned. Storm's coming.", "Ah, Ned, you made it."],
        "swipe_info": [{"send_date": "November 30, 2026 7:02pm", "extra": {}}] * 2,
    },
    {
        "name": "Ned",
        "is_user": True,
        "is_system": False,
        "send_date": "November 30, 2026 7:03pm",
        "mes": "Is the lamp lit?",
        "extra": {},
    },
    {
        "name": "Tobin",
        "is_user": False,
        "is_system": False,
        "send_date": "November 30, 2026 7:03pm",
        "mes": "Lit and smoking, like my pipe.",
        "extra": {},
        "force_avatar": "tobin.png",
        "swipe_id": 1,
        "swipes": ["Not yet.", "Lit and smoking, like my pipe.", "Ask Mira."],
        "swipe_info": [],
    },
    {
        "name": "Mira",
        "is_user": False,
        "is_system": False,
        "send_date": "November 30, 2026 7:04pm",
        "mes": "It is. Come in out of the rain.",
        "extra": {},
    },
]


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _agent(client: TestClient, name: str = "Mira") -> str:
    resp = client.post(
        "/api/agents",
        json={
            "name": name,
            "description": "{{char}} keeps a lighthouse.",
            "first_mes": f"I am {name}.",
            "generation": FAST,
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _import(
    client: TestClient,
    agent_id: str,
    content: bytes,
    name: str = "chat.jsonl",
    members: list[str] | None = None,
):
    return client.post(
        f"/api/agents/{agent_id}/conversations/import",
        files={"file": (name, content, "application/jsonl")},
        data={"members": members} if members else None,
    )


def _counts(services: Services) -> tuple[int, int]:
    with services.db.session() as s:
        return s.query(ConversationRecord).count(), s.query(MessageRecord).count()


@pytest.mark.model
def test_a_sillytavern_chat_imports_and_goes_on(client: TestClient) -> None:
    agent_id = _agent(client)
    resp = _import(client, agent_id, _jsonl(SILLYTAVERN_CHAT))
    assert resp.status_code == 201, resp.text
    conv = resp.json()
    assert conv["agent_id"] == agent_id and conv["user_name"] == "Ned"
    assert conv["authors_note"] == "Keep it short." and conv["authors_note_depth"] == 2
    got = [(m["role"], m["name"], m["versions"], m["selected"]) for m in conv["messages"]]
    assert got == [
        ("assistant", "Mira", SILLYTAVERN_CHAT[1]["swipes"], 0),
        ("user", None, ["Is the lamp lit?"], 0),
        ("assistant", "Tobin", SILLYTAVERN_CHAT[3]["swipes"], 1),
        ("assistant", "Mira", ["It is. Come in out of the rain."], 0),
    ]
    assert conv["messages"][2]["content"] == "Lit and smoking, like my pipe."
    assert conv["messages"][0]["speaker_id"] == agent_id  # the agent's own lines
    assert conv["messages"][2]["speaker_id"] is None

    resp = client.post(
        f"/api/conversations/{conv['id']}/messages", json={"content": "Any ships tonight?"}
    )
    assert resp.status_code == 200, resp.text
    after = client.get(f"/api/conversations/{conv['id']}").json()["messages"]
    assert len(after) == 6
    assert [m["role"] for m in after[-2:]] == ["user", "assistant"]
    assert after[-2]["position"] > after[3]["position"]


def _without_dates(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        line.pop("create_date", None)
    return lines


@pytest.mark.model
def test_export_import_round_trip_keeps_messages_swipes_and_names(client: TestClient) -> None:
    ids = {name: _agent(client, name) for name in ("Mira", "Tobin", "Essa")}
    conv = client.post(
        "/api/conversations",
        json={"agent_ids": list(ids.values()), "reply_order": "round_robin", "user_name": "Ned"},
    ).json()
    cid = conv["id"]
    for text in ("Hello.", "And you?"):
        assert client.post(f"/api/conversations/{cid}/messages", json={"content": text}).is_success
    assert client.post(f"/api/conversations/{cid}/regenerate").is_success  # a second swipe

    exported = client.get(f"/api/conversations/{cid}/export?format=jsonl")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("application/jsonl")
    assert "attachment" in exported.headers["content-disposition"]
    lines = [json.loads(line) for line in exported.text.splitlines()]
    header, messages = lines[0], lines[1:]
    assert header["user_name"] == "Ned" and header["character_name"] == "Mira"
    assert {"create_date", "chat_metadata"} <= header.keys()
    names = ["Mira", "Tobin", "Essa", "Ned", "Mira", "Ned", "Tobin"]
    assert [m["name"] for m in messages] == names
    assert [m["is_user"] for m in messages] == [n == "Ned" for n in names]
    assert len(messages[-1]["swipes"]) == 2 and messages[-1]["swipe_id"] == 1
    for m in messages:
        assert {"name", "is_user", "is_system", "send_date", "mes", "extra"} <= m.keys()
        assert "swipes" not in m or m["swipes"][m["swipe_id"]] == m["mes"]

    back = _import(client, ids["Mira"], exported.content, members=[ids["Tobin"], ids["Essa"]])
    back = back.json()
    assert back["members"] == list(ids.values()) and back["reply_order"] == "round_robin"
    again = client.get(f"/api/conversations/{back['id']}/export?format=jsonl").text
    assert _without_dates(again) == _without_dates(exported.text)

    full = client.get(f"/api/conversations/{cid}/export?format=json").json()
    assert full["format"] == "anima-chat"
    original = full["conversation"]["messages"]
    assert len(original) == 7
    fields = ("role", "versions", "selected", "name", "speaker_id", "pinned")
    assert [[m[f] for f in fields] for m in back["messages"]] == [
        [m[f] for f in fields] for m in original
    ]
    # Imported as a group, the chat goes on by its reply order (Essa follows Tobin).
    resp = client.post(f"/api/conversations/{back['id']}/messages", json={"content": "Essa?"})
    assert resp.status_code == 200 and resp.json()["message"]["name"] == "Essa"

    # Onto one agent alone, every line keeps its speaker's name.
    alone = _import(client, ids["Essa"], exported.content).json()
    assert alone["members"] == []
    assert [m["name"] for m in alone["messages"]] == [m["name"] for m in original]


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (b'{"user_name": "Ned"}\n{"name": "Mira", "mes": "hi"}\n{oops\n', 3, "not valid JSON"),
        (b'{"user_name": "Ned"}\n[1, 2]\n', 2, "expected a JSON object"),
        (b'{"user_name": "Ned"}\n{"name": "Mira", "is_user": false}\n', 2, "'mes'"),
        (
            b'{"user_name": "Ned"}\n{"mes": "a"}\n{"mes": "b", "swipes": ["b"], "swipe_id": 4}\n',
            3,
            "swipe_id",
        ),
        (b'{"mes": "a", "swipes": [1, 2]}\n', 1, "swipes"),
    ],
)
def test_a_malformed_chat_is_422_naming_the_line_and_nothing_is_stored(
    client: TestClient, services: Services, content: bytes, line: int, words: str
) -> None:
    agent_id = _agent(client)
    before = _counts(services)
    resp = _import(client, agent_id, content, "bad.jsonl")
    assert resp.status_code == 422, resp.text
    assert f"bad.jsonl line {line}" in resp.text and words in resp.text
    assert _counts(services) == before


def test_an_empty_chat_and_an_unknown_agent_are_refused(client: TestClient) -> None:
    agent_id = _agent(client)
    assert _import(client, agent_id, b'{"user_name": "Ned"}\n').status_code == 422
    assert _import(client, "nobody", _jsonl(SILLYTAVERN_CHAT)).status_code == 404


def test_an_oversized_chat_is_413(client: TestClient, services: Services) -> None:
    agent_id = _agent(client)
    before = _counts(services)
    limit = services.settings.server.max_upload_bytes
    line = json.dumps({"name": "Mira", "mes": "x" * 1000}) + "\n"
    big = (line * (limit // len(line) + 2)).encode()
    assert _import(client, agent_id, big).status_code == 413
    assert _counts(services) == before


def test_export_of_an_unknown_conversation_is_404(client: TestClient) -> None:
    assert client.get("/api/conversations/nothing/export").status_code == 404
    assert client.get("/api/conversations/nothing/export?format=xml").status_code == 422


def test_another_browser_can_neither_export_nor_drive_my_chats(client: TestClient) -> None:
    ids = [_agent(client, name) for name in ("Mira", "Tobin")]
    imported = _import(client, ids[0], _jsonl(SILLYTAVERN_CHAT)).json()
    group = client.post("/api/conversations", json={"agent_ids": ids}).json()
    assert client.get(f"/api/conversations/{imported['id']}/export").status_code == 200
    with TestClient(client.app) as stranger:  # a fresh cookie jar: another visitor
        for cid in (imported["id"], group["id"]):
            assert stranger.get(f"/api/conversations/{cid}/export").status_code == 404
            assert stranger.get(f"/api/conversations/{cid}/export?format=json").status_code == 404
        resp = stranger.post(f"/api/conversations/{group['id']}/reply", json={"agent_id": ids[1]})
        assert resp.status_code == 403
        resp = stranger.patch(
            f"/api/conversations/{group['id']}/group", json={"reply_order": "manual"}
        )
        assert resp.status_code == 403
    assert client.get(f"/api/conversations/{group['id']}").json()["reply_order"] == "round_robin"
