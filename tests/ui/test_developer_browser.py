"""The Developer screen in a real browser: a signed-in wallet creates a key (shown once),
sees it listed with its limits, and revokes it; the key then stops working."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from agents.llm.pool import LLMPool
from chain.auth import SESSION_COOKIE
from container import Services, build_services
from tests.chain.helpers import fast_settings
from tests.servers import serve_app

SCREENSHOT = Path("/tmp/keys_developer.png")


@pytest.fixture
def dev_server(tmp_path: Path, llm_pool: LLMPool) -> Iterator[tuple[str, Services]]:
    from app import create_app

    svc = build_services(fast_settings(tmp_path / "data"), llm=llm_pool)
    svc.chain.start(follow=False)
    try:
        with serve_app(create_app(services=svc)) as url:
            yield url, svc
    finally:
        svc.close()


def _pick(page: Page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option).click()


@pytest.mark.browser
def test_create_list_and_revoke_a_key_on_the_developer_screen(
    page: Page, dev_server: tuple[str, Services]
) -> None:
    server, _ = dev_server
    # Sign in with a local wallet over the API and hand the session cookie to the browser.
    session = httpx.post(f"{server}/api/auth/local-wallets", json={"password": "correct horse"})
    assert session.status_code == 201, session.text
    page.context.add_cookies(
        [{"name": SESSION_COOKIE, "value": session.cookies[SESSION_COOKIE], "url": server}]
    )
    page.goto(f"{server}/ui/")
    page.get_by_role("tab", name="Developer").click()
    expect(page.locator("#dev-status")).to_contain_text("0 active key(s)")

    page.locator("#dev-name textarea, #dev-name input").first.fill("ci key")
    page.locator("#dev-create").click()
    shown = page.locator("#dev-new-key textarea, #dev-new-key input").first
    expect(shown).to_have_value(re.compile(r"^anima_"))
    key = shown.input_value()
    table = page.locator("#dev-keys")
    expect(table).to_contain_text("ci key")
    expect(table).to_contain_text("active")
    assert httpx.get(f"{server}/api/auth/me", headers={"X-API-Key": key}).status_code == 200

    _pick(page, "dev-key-picker", f"ci key ({key[:12]}…)")
    page.locator("#dev-revoke").click()
    expect(table).to_contain_text("revoked")
    expect(page.locator("#dev-status")).to_contain_text("revoked")
    expect(shown).to_have_value("")  # the key is not left on the screen
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert httpx.get(f"{server}/api/auth/me", headers={"X-API-Key": key}).status_code == 401
