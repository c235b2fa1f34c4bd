"""The gallery in a real browser over 200 agents: search, the tag and "mine" filters, sorting,
the next page, one click to chat or edit, and importing a card by dropping it on the page.

What the grid shows is checked against the service's own answer to the same query, so the
test follows the search rules instead of copying them. Screenshots at 1280 and 390 px wide
go to /tmp/shots/gallery-*.png.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from agents.agent_search import AgentQuery
from agents.llm.pool import LLMPool
from agents.records import AgentRecord
from bench.studio import seed_agents
from chain.auth import SESSION_COOKIE
from container import Services, build_services
from core.principal import ANONYMOUS, SYSTEM, Principal
from tests.chain.helpers import fast_settings
from tests.servers import serve_app
from ui.gallery.handlers import PAGE_SIZE

SHOTS = Path("/tmp/shots")
CARDS = "#gallery-grid .gallery-card"
WAIT_MS = 30_000  # two shared CPU cores: a redraw can take a few seconds

# Drops a file on the gallery as a browser does: dragenter, dragover, drop, one DataTransfer.
DROP = """
([name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, {type}));
  const target = document.querySelector('#gallery-grid');
  for (const kind of ['dragenter', 'dragover', 'drop']) {
    const options = {bubbles: true, cancelable: true, dataTransfer: data};
    target.dispatchEvent(new DragEvent(kind, options));
  }
}
"""


@pytest.fixture
def gallery_server(tmp_path: Path, llm_pool: LLMPool) -> Iterator[tuple[str, Services]]:
    from app import create_app

    settings = fast_settings(tmp_path / "data", chain_mint_on_create=False)
    svc = build_services(settings, llm=llm_pool)
    svc.chain.start(follow=False)
    try:
        with serve_app(create_app(services=svc)) as url:
            yield url, svc
    finally:
        svc.close()


def _names(page: Page) -> list[str]:
    return page.locator(f"{CARDS} .gallery-name").all_inner_texts()


def _expected(services: Services, principal: Principal, **query: object) -> list[str]:
    found = services.agents.search_agents(
        AgentQuery(limit=PAGE_SIZE, **query),  # type: ignore[arg-type]
        principal=principal,
    )
    assert found.agents, f"the query {query} finds nothing: the test would prove little"
    return [a.name for a in found.agents]


def _shows(page: Page, names: list[str]) -> None:
    expect(page.locator(f"{CARDS} .gallery-name")).to_have_text(names, timeout=WAIT_MS)


def _drop(page: Page, name: str, type_: str, content: bytes) -> None:
    page.evaluate(DROP, [name, type_, base64.b64encode(content).decode()])


@pytest.mark.browser
def test_gallery_search_filters_pages_open_and_import(
    page: Page, gallery_server: tuple[str, Services]
) -> None:
    server, services = gallery_server
    SHOTS.mkdir(exist_ok=True)
    session = httpx.post(f"{server}/api/auth/local-wallets", json={"password": "correct horse"})
    assert session.status_code == 201, session.text
    me = Principal(session.json()["address"])
    seed_agents(services, 190)
    seed_agents(services, 10, owners=[me.address], start=datetime(2026, 6, 1, tzinfo=UTC))
    # One of them with a picture, minted and fine-tuned: its card shows all three.
    shown = services.agents.search_agents(AgentQuery(owner="me", limit=1), principal=me).agents[0]
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 200)).save(picture, "PNG")
    services.agents.set_avatar(shown.id, picture.getvalue(), principal=SYSTEM)
    with services.agents.db.session() as s:
        row = s.get(AgentRecord, shown.id)
        row.mint_state, row.adapter = "minted", "adapter-1"
    page.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": session.cookies[SESSION_COOKIE], "url": server}]
    )
    page.goto(f"{server}/ui/")

    # The landing tab: the most recent agents first, a page of them.
    expect(page.locator("#gallery-page")).to_have_text("Page 1 of 9 · 200 agents", timeout=WAIT_MS)
    _shows(page, _expected(services, me, sort="recent"))
    first = page.locator(CARDS).first
    expect(first.locator(".gallery-tag").first).to_be_visible()
    expect(first.locator(".gallery-creator")).to_have_text("by bench", timeout=WAIT_MS)
    pictured = page.locator(f'{CARDS}[data-agent="{shown.id}"]')
    expect(pictured.locator(".gallery-badge")).to_have_text(["Minted", "Fine-tuned"])
    expect(pictured.locator("img.gallery-avatar")).to_be_visible()
    page.wait_for_function(
        "id => document.querySelector(`[data-agent='${id}'] img`).naturalWidth === 64", arg=shown.id
    )
    page.screenshot(path=str(SHOTS / "gallery-1280.png"), full_page=True)

    # Search by name.
    search = page.locator("#gallery-search textarea, #gallery-search input").first
    search.fill("esme 1")
    _shows(page, _expected(services, me, q="esme 1", sort="recent"))
    search.fill("")
    _shows(page, _expected(services, me, sort="recent"))

    # Filter by tag: from the filter, then from a tag on a card.
    page.locator("#gallery-tag input").first.click()
    page.get_by_role("option", name="pirate (").click()
    _shows(page, _expected(services, me, tag="pirate", sort="recent"))
    page.locator("#gallery-tag input").first.click()
    page.get_by_role("option", name="All tags").click()
    _shows(page, _expected(services, me, sort="recent"))
    chip = page.locator(CARDS).first.locator(".gallery-tag").first
    tag = chip.inner_text()
    chip.click()
    _shows(page, _expected(services, me, tag=tag, sort="recent"))
    page.locator("#gallery-tag input").first.click()
    page.get_by_role("option", name="All tags").click()

    # Mine, then sorted by name.
    page.locator("#gallery-scope").get_by_text("Mine").click()
    expect(page.locator("#gallery-page")).to_have_text("Page 1 of 1 · 10 agents", timeout=WAIT_MS)
    page.locator("#gallery-sort").get_by_text("Name").click()
    _shows(page, _expected(services, me, owner="me", sort="name"))
    page.locator("#gallery-scope").get_by_text("All agents").click()
    _shows(page, _expected(services, me, sort="name"))

    # The next page.
    page.locator("#gallery-next").click()
    expect(page.locator("#gallery-page")).to_have_text("Page 2 of 9 · 200 agents", timeout=WAIT_MS)
    _shows(page, _expected(services, me, sort="name", offset=PAGE_SIZE))
    page.locator("#gallery-prev").click()
    expect(page.locator("#gallery-page")).to_have_text("Page 1 of 9 · 200 agents", timeout=WAIT_MS)

    # One click to chat: the Chat tab with that agent picked.
    card = page.locator(CARDS).nth(1)
    name = card.locator(".gallery-name").inner_text()
    card.locator(".gallery-chat").click()
    expect(page.locator("#chat-agent input").first).to_have_value(
        f"{name} · {card.get_attribute('data-agent')[:8]}"  # type: ignore[index]
    )
    expect(page.locator("#chat-input")).to_be_visible()

    # ... and to edit: the Agents tab with its form filled.
    page.get_by_role("tab", name="Gallery").click()
    card = page.locator(CARDS).nth(2)
    name = card.locator(".gallery-name").inner_text()
    card.locator(".gallery-edit").click()
    expect(page.locator("#agent-name textarea, #agent-name input").first).to_have_value(
        name, timeout=WAIT_MS
    )

    # Drop a card file anywhere on the gallery: it is imported, and first under Recent.
    page.get_by_role("tab", name="Gallery").click()
    page.locator("#gallery-sort").get_by_text("Recent").click()
    card_json = {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {
            "name": "Dropped Dana",
            "description": "{{char}} arrived by drag and drop.",
            "tags": ["dropped"],
            "creator": "playwright",
        },
    }
    _drop(page, "dana.json", "application/json", json.dumps(card_json).encode())
    expect(page.locator("#gallery-status")).to_contain_text(
        "Imported Dropped Dana", timeout=WAIT_MS
    )
    expect(page.locator(CARDS).first.locator(".gallery-name")).to_have_text(
        "Dropped Dana", timeout=WAIT_MS
    )
    expect(page.locator("#gallery-page")).to_have_text("Page 1 of 9 · 201 agents", timeout=WAIT_MS)
    dana = services.agents.search_agents(AgentQuery(q="dropped dana"), principal=ANONYMOUS)
    assert [a.owner_address for a in dana.agents] == [me.address]

    # A file that is not a card: a sentence that says why, and nothing is added.
    _drop(page, "notes.json", "application/json", b'{"hello": "world"}')
    expect(page.locator("#gallery-status")).to_contain_text("⚠️")
    expect(page.locator("#gallery-page")).to_have_text("Page 1 of 9 · 201 agents", timeout=WAIT_MS)

    # A phone-width window: one column of cards.
    page.set_viewport_size({"width": 390, "height": 844})
    boxes = [page.locator(CARDS).nth(i).bounding_box() for i in range(2)]
    assert boxes[0] and boxes[1] and boxes[1]["y"] > boxes[0]["y"]
    assert boxes[0]["x"] == boxes[1]["x"] and boxes[0]["width"] <= 390
    page.screenshot(path=str(SHOTS / "gallery-390.png"), full_page=True)
    page.screenshot(path=str(SHOTS / "gallery-390-top.png"))
