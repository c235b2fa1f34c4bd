"""Hostile card files and avatars: decompression bombs, absurd images, archive floods.

Each case goes through the HTTP import the way a stranger's file arrives, and checks both the
answer (a clear 4xx in the OpenAI error shape) and that nothing stored changed. Where the
point is *what the server did not do* (decode, inflate, fsync), a spy records it.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

from agents import cards
from container import Services
from core.principal import SYSTEM
from core.settings import Settings


def _chunk(kind: bytes, body: bytes) -> bytes:
    return cards._Chunk(kind, body).encode()


def _png(width: int = 16, height: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(out, format="PNG")
    return out.getvalue()


def _declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` RGBA pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 4 * min(width, 4096)), 9)
    return cards.PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)


def _with_card_chunks(image: bytes, *chunks: bytes) -> bytes:
    """``image`` with the given chunks inserted right before IEND."""
    end = image.rindex(b"IEND") - 4
    return image[:end] + b"".join(chunks) + image[end:]


def _b64(card: dict[str, Any]) -> bytes:
    return base64.b64encode(json.dumps(card).encode())


def _stored_files(settings: Settings) -> list[Path]:
    return sorted(p.relative_to(settings.data_dir) for p in settings.agents_dir.rglob("*"))


def _refused(resp: Any, status: int, *words: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    error = resp.json()["error"]
    assert error["code"] == status
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error["message"]


# ----- images ------------------------------------------------------------------------------
def test_png_declaring_absurd_pixels_is_refused_before_decoding(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    keep = client.post("/api/agents", json={"name": "Keep"}).json()
    before = _stored_files(settings)
    card = _b64({"spec": "chara_card_v2", "data": {"name": "Huge"}})

    for width, height in [(100_000, 100_000), (13_000, 13_000)]:  # 13k^2 RGBA: 0.7 GB
        huge = _with_card_chunks(
            _declaring(width, height) + _chunk(b"IEND", b""), _chunk(b"tEXt", b"chara\0" + card)
        )
        resp = client.post("/api/agents/import", files={"file": ("huge.png", huge)})
        _refused(resp, 413, f"{width}x{height}", "ANIMA_MAX_IMAGE_PIXELS")
        avatar = client.put(f"/api/agents/{keep['id']}/avatar", files={"file": ("a.png", huge)})
        _refused(avatar, 413, f"{width}x{height}")
    assert not [size for size in decoded if size[0] * size[1] > settings.server.max_image_pixels]
    assert [a["name"] for a in client.get("/api/agents").json()] == ["Keep"]
    assert _stored_files(settings) == before


# ----- PNG text chunks -----------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _bomb_chunk(keyword: bytes, megabytes: int) -> bytes:
    """A zTXt card chunk of ~60 kB that inflates to ``megabytes`` MB of a *valid* card JSON
    (padded with spaces), so only the inflation cap can stop it."""
    text = json.dumps({"spec": "chara_card_v2", "data": {"name": "Bomb"}}).encode()
    text += b" " * (megabytes * 1024 * 1024)
    return _chunk(b"zTXt", keyword + b"\0\0" + zlib.compress(text, 9))


def test_card_with_a_60_mb_zlib_bomb_chunk_is_refused(
    client: TestClient, settings: Settings
) -> None:
    bomb = _with_card_chunks(_png(), _bomb_chunk(b"chara", 60))
    assert len(bomb) < 200_000
    resp = client.post("/api/agents/import", files={"file": ("bomb.png", bomb)})
    _refused(resp, 413, "'chara'", "MB")
    assert client.get("/api/agents").json() == []
    assert _stored_files(settings) == []


def test_card_chunks_are_inflated_lazily_and_the_first_good_one_wins(client: TestClient) -> None:
    good = {"spec": "chara_card_v3", "data": {"name": "Good", "description": "first"}}
    png = _with_card_chunks(
        _png(),
        _chunk(b"iTXt", b"ccv3\0\x01\x00\0\0" + zlib.compress(_b64(good))),
        *[_bomb_chunk(b"chara", 60) for _ in range(3)],  # never needed: ccv3 parses
        *[_bomb_chunk(b"ccv3", 60) for _ in range(3)],  # duplicates: the first one wins
    )
    tracemalloc.start()
    try:
        imported = cards.read_card_file("c.png", png, 100 * 1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert imported.card.data.name == "Good"
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.0f} MB allocated: a bomb was inflated"
    resp = client.post("/api/agents/import", files={"file": ("c.png", png)})
    assert resp.status_code == 201, resp.text
    assert resp.json()["data"]["description"] == "first"


# ----- CHARX -------------------------------------------------------------------------------
def _charx(files: dict[str, bytes], card: dict[str, Any] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        body = card or {"spec": "chara_card_v3", "data": {"name": "Many"}}
        archive.writestr("card.json", json.dumps(body))
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_charx_with_100000_entries_is_refused(client: TestClient, settings: Settings) -> None:
    flood = _charx({f"assets/other/{i}.bin": b"x" for i in range(100_000)})
    assert len(flood) < settings.server.max_upload_bytes  # small enough to pass the upload limit
    resp = client.post("/api/agents/import", files={"file": ("flood.charx", flood)})
    _refused(resp, 413, "100,001 entries")
    assert client.get("/api/agents").json() == []
    assert _stored_files(settings) == []


def test_charx_import_costs_one_fsync_however_many_assets(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = {f"assets/emotion/images/e{i}.png": _png(4 + i % 5, 4) for i in range(200)}
    calls: list[int] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    resp = client.post("/api/agents/import", files={"file": ("many.charx", _charx(assets))})
    assert resp.status_code == 201, resp.text
    assert len(calls) <= 2, f"{len(calls)} fsyncs for one import"  # the asset archive (+avatar)
    monkeypatch.setattr(os, "fsync", real_fsync)
    out = client.get(f"/api/agents/{resp.json()['id']}/card", params={"format": "charx"})
    _card, back = cards.read_charx(out.content, 50_000_000)
    assert back == assets


# ----- lossless V2 ---------------------------------------------------------------------------
def test_v2_png_card_exported_as_v2_json_equals_the_imported_data(client: TestClient) -> None:
    """A card as SillyTavern writes it: no book ``extensions``, no ``use_regex``, no V3 keys."""
    data = {
        "name": "Vera",
        "description": "{{char}} keeps bees.",
        "personality": "calm",
        "scenario": "",
        "first_mes": "Mind the hives.",
        "mes_example": "",
        "creator_notes": "",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": [],
        "tags": ["cozy"],
        "creator": "someone",
        "character_version": "1.0",
        "extensions": {"talkativeness": "0.5", "depth_prompt": {"depth": 4, "prompt": ""}},
        "character_book": {
            "name": "Hives",
            "entries": [
                {
                    "keys": ["queen"],
                    "content": "The queen is old.",
                    "extensions": {"position": 1},
                    "enabled": True,
                    "insertion_order": 100,
                    "id": 0,
                    "comment": "",
                    "selective": False,
                    "secondary_keys": [],
                    "constant": False,
                    "position": "after_char",
                }
            ],
        },
    }
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}
    png = _with_card_chunks(_png(), _chunk(b"tEXt", b"chara\0" + _b64(card)))
    agent = client.post("/api/agents/import", files={"file": ("vera.png", png)}).json()
    exported = client.get(
        f"/api/agents/{agent['id']}/card", params={"format": "json", "spec": "v2"}
    ).json()
    assert exported["data"] == data
    assert (exported["spec"], exported["spec_version"]) == ("chara_card_v2", "2.0")


# ----- avatars and listing -------------------------------------------------------------------
def test_avatar_of_a_failed_commit_is_removed_and_the_old_one_kept(
    client: TestClient, services: Services, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    agent = client.post("/api/agents", json={"name": "Pic"}).json()
    first = _png(8, 8)
    put = client.put(f"/api/agents/{agent['id']}/avatar", files={"file": ("a.png", first)})
    assert put.status_code == 200
    files_before = _stored_files(settings)

    def failing_commit(self: Session) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Session, "commit", failing_commit)
    with pytest.raises(OperationalError):
        services.agents.set_avatar(agent["id"], _png(9, 9), principal=SYSTEM)
    monkeypatch.undo()
    assert client.get(f"/api/agents/{agent['id']}/avatar").content == first
    assert _stored_files(settings) == files_before


def test_agent_list_is_paged(client: TestClient) -> None:
    ids = [client.post("/api/agents", json={"name": f"A{i}"}).json()["id"] for i in range(3)]
    page = client.get("/api/agents", params={"limit": 2})
    assert [a["id"] for a in page.json()] == ids[:2]
    assert page.headers["x-total-count"] == "3"
    rest = client.get("/api/agents", params={"limit": 2, "offset": 2}).json()
    assert [a["id"] for a in rest] == ids[2:]
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "many"}):
        assert client.get("/api/agents", params=bad).status_code == 422, bad
