"""A hostile page in a real Chromium cannot change anything; the studio's own pages still can.

The attacker's page is served from ``localhost`` on another port while Anima runs on
``127.0.0.1``: to the browser that is another site, exactly like a tab on the open web.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image
from playwright.sync_api import Page

from agents import cards
from container import Services

pytestmark = pytest.mark.browser

ATTACK = """
async ([target, cardB64]) => {
  const bytes = Uint8Array.from(atob(cardB64), c => c.charCodeAt(0));
  const form = new FormData();
  form.append("file", new Blob([bytes], {type: "image/png"}), "card.png");
  // A "simple request": no CORS preflight, the browser sends it and hides the answer.
  await fetch(target + "/api/agents/import", {method: "POST", body: form, mode: "no-cors"});
  await fetch(target + "/api/agents", {
    method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
    body: JSON.stringify({name: "Injected"}),
  });
  return "sent";
}
"""


class _EvilPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>cats</title><p>Nice cats.</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def evil_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EvilPage)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _card() -> str:
    image = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(image, format="PNG")
    card = cards.parse_card_json({"spec": "chara_card_v2", "data": {"name": "Planted"}})
    return base64.b64encode(cards.write_png_card(card, image.getvalue())).decode()


def test_cross_site_page_cannot_write_but_the_studio_can(
    live_server: str,
    evil_site: str,
    services: Services,
    page: Page,
) -> None:
    page.goto(f"{evil_site}/")
    assert page.evaluate(ATTACK, [live_server, _card()]) == "sent"
    assert services.agents.list_agents() == []

    # The studio's own page, same origin: its writes go through, and Gradio itself works.
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    page.locator("#agent-save").wait_for()
    status = page.evaluate(
        """async () => (await fetch("/api/agents", {method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({name: "Mine"})})).status"""
    )
    assert status == 201
    page.get_by_role("tab", name="Import").click()
    page.locator("#import-file input[type=file]").set_input_files(
        files=[{"name": "card.png", "mimeType": "image/png", "buffer": base64.b64decode(_card())}]
    )
    page.locator("#import-status").get_by_text("Imported").wait_for()
    assert sorted(a.name for a in services.agents.list_agents()) == ["Mine", "Planted"]
