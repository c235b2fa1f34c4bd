"""The Models screen in a real browser: the operator sees the default and the word on the
bundled toy, a wrong key shows the server's answer and saves nothing, a real llama.cpp server
is added and its models listed, then an agent is switched to it in the editor.

Screenshots: /tmp/shots/models-*.png at 1280 and 390 px wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from agents.llm.pool import LLMPool
from chain.auth import SESSION_COOKIE
from container import Services, build_services
from core.principal import SYSTEM
from tests.chain.helpers import fast_settings
from tests.llama_server import serve_bundled_model
from tests.servers import serve_app

SHOTS = Path("/tmp/shots")
KEY = "sk-browser-secret-5150"


@pytest.fixture
def models_server(tmp_path: Path, llm_pool: LLMPool) -> Iterator[tuple[str, Services, str]]:
    from app import create_app

    svc = build_services(fast_settings(tmp_path / "data"), llm=llm_pool)
    svc.chain.start(follow=False)
    try:
        with serve_bundled_model(KEY) as llama, serve_app(create_app(services=svc)) as url:
            yield url, svc, llama
    finally:
        svc.close()


def _text(page: Page, elem_id: str) -> object:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"models-{name}.png"), full_page=True)


@pytest.mark.browser
def test_add_a_server_see_its_models_and_switch_an_agent_to_it(
    page: Page, models_server: tuple[str, Services, str]
) -> None:
    server, svc, llama = models_server
    session = httpx.post(f"{server}/api/auth/local-wallets", json={"password": "correct horse"})
    assert session.status_code == 201, session.text
    cookie = session.cookies[SESSION_COOKIE]
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": server}])
    made = httpx.post(
        f"{server}/api/agents", json={"name": "Mira"}, cookies={SESSION_COOKIE: cookie}
    )
    assert made.status_code == 201, made.text
    agent_id = made.json()["id"]

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{server}/ui/")
    page.get_by_role("tab", name="Models").click()
    expect(page.locator("#models-summary")).to_contain_text("SmolLM2-135M-Instruct (bundled)")
    expect(page.locator("#models-summary")).to_contain_text("toy")
    expect(page.locator("#models-how-to")).to_contain_text("http://127.0.0.1:11434/v1")
    expect(page.locator("#models-empty")).to_contain_text("No connections yet")
    _shoot(page, "empty-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    _shoot(page, "empty-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    _text(page, "models-server-name").fill("llama")
    _text(page, "models-server-url").fill(llama)
    _text(page, "models-server-key").fill("sk-wrong")
    page.locator("#models-server-add").click()
    expect(page.locator("#models-server-status")).to_contain_text("HTTP 401")
    assert svc.models.overview(principal=SYSTEM).connections == []  # not saved
    expect(_text(page, "models-server-url")).to_have_value(llama)  # the form keeps its values

    _text(page, "models-server-key").fill(KEY)
    page.locator("#models-server-test").click()
    expect(page.locator("#models-server-status")).to_contain_text("It answered. Models: smollm2")
    page.locator("#models-server-add").click()
    expect(page.locator("#models-server-status")).to_contain_text("Added llama")
    table = page.locator("#models-table")
    expect(table).to_contain_text("smollm2")
    expect(table).to_contain_text(llama)
    expect(_text(page, "models-server-key")).to_have_value("")  # the key left the screen
    assert KEY not in page.content()
    _shoot(page, "added-1280")

    page.get_by_role("tab", name="Agents").click()
    page.locator("#agent-select input").first.click()
    page.get_by_role("option", name=f"Mira · {agent_id[:8]}").click()
    expect(_text(page, "agent-name")).to_have_value("Mira")
    page.locator("#agent-tab-generation-button").click()  # the model is in Generation
    model = page.locator("#agent-model input").first
    expect(model).to_be_enabled()
    model.click()
    page.get_by_role("option", name="llama: smollm2").click()
    expect(page.locator("#agent-model-status")).to_contain_text("conn:llama/smollm2")
    assert svc.agents.get_agent(agent_id).model == "conn:llama/smollm2"
    _shoot(page, "agent-1280")

    page.get_by_role("tab", name="Models").click()
    page.set_viewport_size({"width": 390, "height": 844})  # tabs fold into a menu at this width
    expect(page.locator("#models-table")).to_contain_text("smollm2")
    _shoot(page, "added-390")
