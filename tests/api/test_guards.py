"""Hostile web pages and hostile clients: Host allow-list, cross-site writes, CORS, body caps,
and a server that keeps answering while an upload is being processed.

These go through the whole app (FastAPI routes and Gradio's under ``/ui``), because the guards
are middleware around everything, not a feature of one router.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from agents import cards
from container import Services
from core.principal import SYSTEM

EVIL = "http://evil.example"


def _card_png(pad_bytes: int = 0) -> bytes:
    """A real V2 PNG card; ``pad_bytes`` of an ancillary chunk make it as large as wanted."""
    image = io.BytesIO()
    Image.new("RGB", (24, 24), (10, 120, 200)).save(image, format="PNG")
    card = cards.parse_card_json({"spec": "chara_card_v2", "data": {"name": "Upload"}})
    png = cards.write_png_card(card, image.getvalue())
    if not pad_bytes:
        return png
    pad = cards._Chunk(b"zzPd", b"\0" * pad_bytes).encode()  # ancillary, private, ignored
    return png[:33] + pad + png[33:]  # right after IHDR (8-byte signature + 25-byte IHDR)


def _error(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "code"} <= set(body["error"]), body
    assert body["error"]["code"] == resp.status_code
    return body["error"]


# ----- Host allow-list (DNS rebinding) ------------------------------------------------------
def test_foreign_host_header_is_refused_on_every_surface(client: TestClient) -> None:
    for method, path in [
        ("GET", "/api/agents"),
        ("GET", "/v1/models"),
        ("GET", "/ui/"),
        ("GET", "/openapi.json"),
        ("POST", "/api/agents"),
    ]:
        resp = client.request(method, path, headers={"Host": "evil.example"}, json={"name": "X"})
        assert resp.status_code == 400, (path, resp.status_code)
        assert "evil.example" in _error(resp)["message"]
        assert "ANIMA_ALLOWED_HOSTS" in _error(resp)["message"]
    for host in ("localhost:7860", "127.0.0.1", "[::1]:7860", "LOCALHOST"):
        assert client.get("/api/agents", headers={"Host": host}).status_code == 200, host
    assert client.get("/api/agents").json() == []  # the refused POST stored nothing


def test_allowed_hosts_setting_adds_names_and_subdomains(services: Services) -> None:
    from app import create_app

    settings = services.settings.model_copy(
        update={"allowed_hosts": "anima.example.org, *.lan.example"}
    )
    svc = Services(**{**services.__dict__, "settings": settings})
    with TestClient(create_app(services=svc), base_url="http://anima.example.org") as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/health", headers={"Host": "box.lan.example:80"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "lan.example.evil"}).status_code == 400


# ----- Cross-site writes (CSRF) -------------------------------------------------------------
def test_cross_site_form_post_is_refused_and_changes_nothing(client: TestClient) -> None:
    files = {"file": ("card.png", _card_png(), "image/png")}
    refused = [
        {"Origin": EVIL},
        {"Origin": "null"},  # sandboxed frames, file:// pages
        {"Origin": "http://testserver:8080"},  # another port is another origin
        {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
        {"Sec-Fetch-Site": "same-site"},
    ]
    for headers in refused:
        resp = client.post("/api/agents/import", files=files, headers=headers)
        assert resp.status_code == 403, (headers, resp.status_code)
        assert "cross-site" in _error(resp)["message"]
    agent = client.post("/api/agents", json={"name": "Keep"}).json()
    for method, path in [
        ("DELETE", f"/api/agents/{agent['id']}"),
        ("PATCH", f"/api/agents/{agent['id']}"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/ui/gradio_api/upload"),  # Gradio's own routes are covered too
    ]:
        resp = client.request(method, path, headers={"Origin": EVIL}, json={"name": "X"})
        assert resp.status_code == 403, (path, resp.status_code)
    assert [a["name"] for a in client.get("/api/agents").json()] == ["Keep"]

    # Same-origin pages, reads from anywhere and non-browser clients keep working.
    ok = client.post(
        "/api/agents/import",
        files=files,
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 201, ok.text
    assert client.post("/api/agents/import", files=files).status_code == 201
    assert client.get("/api/agents", headers={"Origin": EVIL}).status_code == 200
    gradio_upload = client.post(
        "/ui/gradio_api/upload",
        files={"files": ("a.txt", b"hello", "text/plain")},
        headers={"Origin": "http://testserver"},
    )
    assert gradio_upload.status_code == 200, gradio_upload.text


def test_cors_is_off_unless_origins_are_allowed(services: Services, client: TestClient) -> None:
    from app import create_app

    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    for path in ("/api/agents", "/ui/gradio_api/queue/join"):
        resp = client.options(path, headers={**preflight, "Host": "localhost:7860"})
        assert "access-control-allow-origin" not in resp.headers, path
        resp = client.get(path.replace("/queue/join", "/info"), headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in resp.headers, path

    friend = "https://app.friend.example"
    settings = services.settings.model_copy(update={"allowed_origins": friend})
    svc = Services(**{**services.__dict__, "settings": settings})
    with TestClient(create_app(services=svc)) as c:
        resp = c.options("/api/agents", headers={**preflight, "Origin": friend})
        assert resp.headers["access-control-allow-origin"] == friend
        created = c.post("/api/agents", json={"name": "Friendly"}, headers={"Origin": friend})
        assert created.status_code == 201
        assert created.headers["access-control-allow-origin"] == friend
        assert (
            c.post("/api/agents", json={"name": "X"}, headers={"Origin": EVIL}).status_code == 403
        )


# ----- Request bodies are capped while they stream in ------------------------------------
def _raw_http(base: str, head: str, chunks: Callable[[socket.socket], int]) -> tuple[str, int]:
    """Send ``head`` then let ``chunks`` write the body; return the response head and how many
    body bytes were written before the server answered."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode())
        sent = chunks(sock)
        sock.settimeout(20)
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        return data.decode("latin-1"), sent


def test_body_over_the_cap_is_refused_before_it_is_all_read(
    live_server: str, services: Services
) -> None:
    host = urlsplit(live_server).netloc
    # A declared length over the cap: 413 at once, without a byte of the body.
    head = (
        f"POST /api/agents/import HTTP/1.1\nHost: {host}\n"
        "Content-Type: multipart/form-data; boundary=xx\nContent-Length: 2000000000\n\n"
    )
    answer, _ = _raw_http(live_server, head, lambda sock: 0)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "ANIMA_MAX_UPLOAD_MB" in answer

    # No length at all (chunked): counted as it arrives, refused once past the cap.
    limit = services.settings.server.max_request_bytes
    head = (
        f"POST /api/agents HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
        "Transfer-Encoding: chunked\n\n"
    )

    def stream_until_answered(sock: socket.socket) -> int:
        sent, piece = 0, b" " * 65536
        sock.settimeout(0.5)
        while sent < 10 * limit:
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break  # the server answered and stopped reading
            sent += len(piece)
            sock.setblocking(False)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            finally:
                sock.settimeout(0.5)
        return sent

    answer, sent = _raw_http(live_server, head, stream_until_answered)
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "ANIMA_MAX_REQUEST_MB" in answer
    # Answered long before the body (never terminated) ends; kernel buffers hold a few MB.
    assert limit <= sent < 10 * limit
    assert services.agents.list_agents() == []


# ----- The server keeps answering while an upload is processed -----------------------------
@pytest.mark.parametrize("route", ["import", "avatar"])
def test_health_answers_while_a_large_upload_is_processed(
    live_server: str, services: Services, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """The upload's file work is held until /api/health has answered: on the event loop that
    would be a deadlock (health times out); off the loop, health answers at once."""
    release, working = threading.Event(), threading.Event()
    name = "import_card" if route == "import" else "set_avatar"
    real = getattr(services.agents, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        working.set()
        release.wait(timeout=30)
        return real(*args, **kwargs)

    monkeypatch.setattr(services.agents, name, held)
    agent = services.agents.create_agent({"name": "Holder"}, principal=SYSTEM)
    big = _card_png(pad_bytes=19 * 1024 * 1024)  # a 19 MB card / avatar
    url = (
        f"{live_server}/api/agents/import"
        if route == "import"
        else f"{live_server}/api/agents/{agent.id}/avatar"
    )
    result: dict[str, Any] = {}

    def upload() -> None:
        with httpx.Client(timeout=60) as http:
            method = "POST" if route == "import" else "PUT"
            result["resp"] = http.request(method, url, files={"file": ("big.png", big)})

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert working.wait(timeout=30), "the upload never reached the service"
        started = time.monotonic()
        health = httpx.get(f"{live_server}/api/health", timeout=10)
        result["health_s"] = time.monotonic() - started
        assert health.status_code == 200
    finally:
        release.set()
        thread.join(timeout=60)
    assert result["resp"].status_code in (200, 201), result["resp"].text


# ----- Non-browser clients keep working --------------------------------------------------
def test_openai_package_still_works(live_server: str, services: Services) -> None:
    agent = services.agents.create_agent({"name": "Client"}, principal=SYSTEM)
    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == [agent.id]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
