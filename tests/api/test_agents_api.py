"""REST API for agents: CRUD, card import/export over HTTP, and bad input that changes nothing."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from agents import cards
from core.settings import Settings


def _png_bytes(color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 48), color).save(out, format="PNG")
    return out.getvalue()


def _v2_card_dict() -> dict:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Seraphina",
            "description": "{{char}} is a forest guardian.",
            "personality": "gentle",
            "scenario": "{{user}} wakes in a glade.",
            "first_mes": "You are safe now, {{user}}.",
            "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: I guard this forest.",
            "creator_notes": "",
            "system_prompt": "",
            "post_history_instructions": "",
            "alternate_greetings": ["Rest, traveller."],
            "tags": ["fantasy"],
            "creator": "tests",
            "character_version": "1",
            "extensions": {"talkativeness": "0.5", "unknown_tool": {"x": [1, 2]}},
            "character_book": {
                "name": "Glade lore",
                "extensions": {},
                "entries": [
                    {
                        "keys": ["glade"],
                        "content": "The glade is hidden by old magic.",
                        "extensions": {"custom": True},
                        "enabled": True,
                        "insertion_order": 10,
                    }
                ],
            },
        },
    }


def _agent_count(client: TestClient) -> int:
    return len(client.get("/api/agents").json())


def test_create_read_update_delete(client: TestClient, settings: Settings) -> None:
    created = client.post(
        "/api/agents",
        json={"name": "Aria", "description": "A navigator.", "generation": {"temperature": 0.5}},
    )
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["name"] == "Aria"
    assert agent["generation"]["temperature"] == 0.5
    assert agent["content_hash"].startswith("0x") and len(agent["content_hash"]) == 66

    listed = client.get("/api/agents").json()
    assert [a["id"] for a in listed] == [agent["id"]]

    patched = client.patch(f"/api/agents/{agent['id']}", json={"personality": "bold"}).json()
    assert patched["data"]["personality"] == "bold"
    assert patched["data"]["description"] == "A navigator."  # untouched fields are kept
    assert patched["version"] == 2
    assert patched["content_hash"] != agent["content_hash"]

    assert client.delete(f"/api/agents/{agent['id']}").status_code == 204
    assert client.get(f"/api/agents/{agent['id']}").status_code == 404
    assert not (settings.agents_dir / agent["id"]).exists()


def test_import_png_then_export_every_format_keeps_the_data(client: TestClient) -> None:
    original = cards.parse_card_json(_v2_card_dict())
    png = cards.write_png_card(original, _png_bytes())
    resp = client.post("/api/agents/import", files={"file": ("sera.png", png, "image/png")})
    assert resp.status_code == 201, resp.text
    agent = resp.json()
    assert agent["has_avatar"]

    exported_png = client.get(f"/api/agents/{agent['id']}/card", params={"format": "png"})
    assert exported_png.headers["content-type"] == "image/png"
    back, image = cards.read_png_card(exported_png.content)
    # The uploaded PNG carried both chunks: the V3 one (preferred) is what was stored.
    as_v3 = cards.card_to_json(original, "v3")["data"]
    assert back.data.dump() == as_v3
    with Image.open(io.BytesIO(image)) as a, Image.open(io.BytesIO(png)) as b:
        assert a.tobytes() == b.tobytes()

    exported_json = client.get(f"/api/agents/{agent['id']}/card", params={"format": "json"})
    body = exported_json.json()
    assert body["spec"] == "chara_card_v3"
    assert cards.parse_card_json(body).data.dump() == as_v3

    exported_charx = client.get(f"/api/agents/{agent['id']}/card", params={"format": "charx"})
    card, _assets = cards.read_charx(exported_charx.content, 10_000_000)
    assert card.data.dump() == as_v3


def test_charx_asset_survives_import_and_export(client: TestClient) -> None:
    icon = _png_bytes((10, 200, 10))
    data = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {
            **_v2_card_dict()["data"],
            "assets": [
                {
                    "type": "icon",
                    "uri": "embeded://assets/icon/images/main.png",
                    "name": "main",
                    "ext": "png",
                }
            ],
            "group_only_greetings": [],
        },
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("card.json", json.dumps(data))
        zf.writestr("assets/icon/images/main.png", icon)
    resp = client.post("/api/agents/import", files={"file": ("c.charx", buf.getvalue())})
    assert resp.status_code == 201, resp.text
    agent_id = resp.json()["id"]
    assert client.get(f"/api/agents/{agent_id}/avatar").content == icon
    out = client.get(f"/api/agents/{agent_id}/card", params={"format": "charx"}).content
    card, assets = cards.read_charx(out, 10_000_000)
    assert assets["assets/icon/images/main.png"] == icon
    assert card.data.dump() == cards.card_to_json(cards.parse_card_json(data), "v3")["data"]


def test_bad_uploads_get_clear_4xx_and_change_nothing(
    client: TestClient, settings: Settings
) -> None:
    keep = client.post("/api/agents", json={"name": "Keeper", "description": "stays"}).json()
    before = client.get(f"/api/agents/{keep['id']}").json()
    files_before = sorted(p.relative_to(settings.data_dir) for p in settings.agents_dir.rglob("*"))

    png = cards.write_png_card(cards.parse_card_json(_v2_card_dict()), _png_bytes())
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("card.json", json.dumps(_v2_card_dict()))
        zf.writestr("../escape.txt", b"x")
    cases = {
        "truncated.png": png[: len(png) // 2],
        "plain.png": _png_bytes(),
        "bad.json": b'{"spec": "chara_card_v2", "data": {',
        "noname.json": json.dumps({"spec": "chara_card_v2", "data": {"description": "x"}}).encode(),
        "evil.charx": evil.getvalue(),
        "random.bin": b"\x00\x01garbage" * 10,
    }
    for name, blob in cases.items():
        resp = client.post("/api/agents/import", files={"file": (name, blob)})
        assert 400 <= resp.status_code < 500, (name, resp.status_code, resp.text)
        message = resp.json()["error"]["message"]
        assert message, name
    evil_resp = client.post("/api/agents/import", files={"file": ("e.charx", evil.getvalue())})
    assert "escape.txt" in evil_resp.json()["error"]["message"]
    assert not (settings.data_dir.parent / "escape.txt").exists()
    assert not (settings.agents_dir.parent / "escape.txt").exists()

    assert _agent_count(client) == 1
    assert client.get(f"/api/agents/{keep['id']}").json() == before
    files_after = sorted(p.relative_to(settings.data_dir) for p in settings.agents_dir.rglob("*"))
    assert files_after == files_before


def test_oversize_upload_is_refused_with_413(
    client: TestClient,
    services,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(services.settings.server, "max_upload_mb", 0.01)
    big = b"{" + b" " * 20_000 + b"}"
    resp = client.post("/api/agents/import", files={"file": ("big.json", big)})
    assert resp.status_code == 413
    assert "limit" in resp.json()["error"]["message"]
    assert _agent_count(client) == 0


def test_unknown_agent_and_bad_fields(client: TestClient) -> None:
    for method, url in [
        ("get", "/api/agents/nope"),
        ("get", "/api/agents/nope/card"),
        ("delete", "/api/agents/nope"),
        ("get", "/api/agents/..%2F..%2Fetc/card"),
    ]:
        resp = getattr(client, method)(url)
        assert resp.status_code == 404, (url, resp.status_code)
        assert "no agent" in resp.json()["error"]["message"], url
    resp = client.post("/api/agents", json={"description": "no name"})
    assert resp.status_code == 422
    assert "name" in resp.json()["error"]["message"]
    resp = client.post("/api/agents", json={"name": "X", "tags": "not-a-list"})
    assert resp.status_code == 422 and "tags" in resp.json()["error"]["message"]
    resp = client.post("/api/agents", json={"name": "X", "generation": {"temperature": -1}})
    assert resp.status_code == 422 and "temperature" in resp.json()["error"]["message"]
    assert _agent_count(client) == 0


def test_avatar_upload_rejects_non_images(client: TestClient) -> None:
    agent = client.post("/api/agents", json={"name": "Pic"}).json()
    bad = client.put(
        f"/api/agents/{agent['id']}/avatar", files={"file": ("x.png", b"not an image")}
    )
    assert bad.status_code == 422
    assert client.get(f"/api/agents/{agent['id']}/avatar").status_code == 404
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(jpeg, format="JPEG")
    ok = client.put(f"/api/agents/{agent['id']}/avatar", files={"file": ("x.jpg", jpeg.getvalue())})
    assert ok.status_code == 200 and ok.json()["has_avatar"]
    got = client.get(f"/api/agents/{agent['id']}/avatar")
    assert got.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(got.content)).size == (8, 8)


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/agents",
        "/api/agents/import",
        "/api/agents/{agent_id}/card",
        "/api/conversations/{conversation_id}/messages",
        "/v1/models",
        "/v1/chat/completions",
    ):
        assert path in paths


def test_data_dir_holds_database(settings: Settings, client: TestClient) -> None:
    assert Path(settings.data_dir / "anima.db").exists()


def test_model_and_adapter_must_not_be_paths(client: TestClient) -> None:
    agent = client.post("/api/agents", json={"name": "Ref"}).json()
    for body in ({"model": "/etc/passwd"}, {"model": "../../x"}, {"adapter": "../secrets"}):
        resp = client.patch(f"/api/agents/{agent['id']}", json=body)
        assert resp.status_code == 422, body
    ok = client.patch(
        f"/api/agents/{agent['id']}", json={"model": "HuggingFaceTB/SmolLM2-360M", "adapter": "v1"}
    ).json()
    assert (ok["model"], ok["adapter"]) == ("HuggingFaceTB/SmolLM2-360M", "v1")
    cleared = client.patch(f"/api/agents/{agent['id']}", json={"model": None}).json()
    assert cleared["model"] is None and cleared["adapter"] == "v1"
