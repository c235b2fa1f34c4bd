"""Lorebook patterns from strangers' cards can never stall a reply (ReDoS).

A regex key is run on every reply against the recent chat. On a backtracking engine a key
like ``(a+)+$`` against a long line of ``a`` runs for minutes while holding the GIL, which
stops the whole server; a pytest timeout cannot even interrupt it. So the reply-time check
runs in a child process with a deadline.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from agents import cards

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys
    from agents.prompt import build_prompt
    from agents.schema import CardData, ChatMessage

    card = CardData.model_validate({
        "name": "Echo",
        "character_book": {"entries": [
            {"keys": ["/(a+)+$/"], "content": "EVIL-LORE", "enabled": True,
             "insertion_order": 0},
            {"keys": ["(x+x+)+y"], "content": "EVIL-TOO", "enabled": True,
             "insertion_order": 1, "use_regex": True},
        ]},
    })
    out = {}
    for label, end in [("no_match", "!"), ("match", "")]:
        line = "x" * 5000 + " " + "a" * 5000 + end
        history = [ChatMessage(role="user", content=line)]
        build = build_prompt(card, history, user_name="U", count_tokens=lambda t: len(t) // 4,
                             context_window=100_000, max_new_tokens=10)
        out[label] = [hit.content for hit in build.lore_hits]
    print(json.dumps(out))
    """
)


def test_catastrophic_key_against_a_long_line_does_not_hang_a_reply() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # the backtracking engine needs far longer than the age of the universe
    )
    assert done.returncode == 0, done.stderr[-2000:]
    hits = json.loads(done.stdout.strip().splitlines()[-1])
    assert hits == {"no_match": [], "match": ["EVIL-LORE"]}


def _png_card(keys: list[str], **entry: object) -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (8, 8)).save(image, format="PNG")
    book = {
        "entries": [
            {"keys": keys, "content": "lore", "enabled": True, "insertion_order": 0, **entry}
        ]
    }
    card = cards.parse_card_json(
        {"spec": "chara_card_v2", "data": {"name": "Rex", "character_book": book}}
    )
    text = base64.b64encode(json.dumps(cards.card_to_json(card, "v2")).encode())
    chunk = cards._Chunk(b"tEXt", b"chara\0" + text).encode()
    raw = image.getvalue()
    end = raw.rindex(b"IEND") - 4
    return raw[:end] + chunk + raw[end:]


def test_backtracking_only_keys_are_refused_when_saved(client: TestClient) -> None:
    bad = [
        (["/(\\w+) \\1/"], {}),  # a backreference
        (["(?<=sir )knight"], {"use_regex": True}),  # lookbehind
        (["dragon", "/fire(?!fly)/i"], {}),  # lookahead, second key
    ]
    for keys, extra in bad:
        resp = client.post(
            "/api/agents/import", files={"file": ("rex.png", _png_card(keys, **extra))}
        )
        assert resp.status_code == 422, (keys, resp.text)
        message = resp.json()["error"]["message"]
        assert "lorebook entry 1" in message and "RE2" in message, message
    book = {"entries": [{"keys": ["(?=x)"], "content": "c", "use_regex": True}]}
    created = client.post("/api/agents", json={"name": "Rex", "character_book": book})
    assert created.status_code == 422
    assert client.get("/api/agents").json() == []

    # What RE2 runs is accepted, catastrophic-looking or not; invalid patterns stay plain keys.
    ok = client.post("/api/agents/import", files={"file": ("r.png", _png_card(["/(a+)+$/"]))})
    assert ok.status_code == 201, ok.text
    agent_id = ok.json()["id"]
    plain = {"entries": [{"keys": ["(unclosed"], "content": "c", "use_regex": True}]}
    assert (
        client.patch(f"/api/agents/{agent_id}", json={"character_book": plain}).status_code == 200
    )
    bad_patch = {"entries": [{"keys": ["/(a)\\1/"], "content": "c"}]}
    resp = client.patch(f"/api/agents/{agent_id}", json={"character_book": bad_patch})
    assert resp.status_code == 422
    stored = client.get(f"/api/agents/{agent_id}").json()["data"]["character_book"]
    assert stored["entries"][0]["keys"] == ["(unclosed"]  # the refused patch changed nothing
