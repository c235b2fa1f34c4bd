"""The prompt inspector and the draft test chat in a real headless Chromium.

A lorebook entry is added to a card through the service; in the editor, previewing "tell me
about <key>" shows the entry fire with its key. An unsaved description change reaches the
test chat's reply, and the test chat stores no conversation. Screenshots at 1280 and 390 px.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import func, select

from agents.llm.base import StreamResult
from agents.llm.pool import LLMPool
from agents.records import ConversationRecord
from agents.schema import ChatMessage, GenerationSettings
from container import Services, build_services
from core.principal import SYSTEM
from tests.chain.helpers import fast_settings
from tests.fake_backends import ScriptedBackend
from tests.servers import serve_app
from ui.panels.inspector import handlers

SHOTS = Path("/tmp/shots")


class _Echo(ScriptedBackend):
    """Says who the card's description makes it, so a test can see which card answered."""

    model_name = "echo"

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        who = "a retired sailor" if "sailor" in messages[0].content else "the keeper"
        for word in f"I am {who}.".split(" "):
            yield word + " "


@pytest.fixture
def insp_services(tmp_path: Path) -> Iterator[Services]:
    settings = fast_settings(tmp_path / "data", chain_mint_on_create=False)
    svc = build_services(settings, llm=LLMPool(settings, default=_Echo()))
    yield svc
    svc.close()


@pytest.fixture
def live_server(insp_services: Services) -> Iterator[str]:
    """The app over the echo model (overrides the shared one, so the page closes first)."""
    from app import create_app

    with serve_app(create_app(services=insp_services)) as url:
        yield url


def _field(page: Page, elem_id: str) -> Locator:
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def _conversations(svc: Services) -> int:
    with svc.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(ConversationRecord)) or 0)


@pytest.mark.browser
def test_see_a_lorebook_entry_fire_then_test_chat_a_draft(
    page: Page, live_server: str, insp_services: Services
) -> None:
    svc = insp_services
    agent = svc.agents.create_agent(
        {"name": "Mira", "description": "{{char}} keeps the lighthouse.", "first_mes": "Evening."},
        principal=SYSTEM,
    )
    book = {
        "entries": [
            {"keys": ["foghorn"], "content": "The foghorn sounds twice a minute.", "name": "Horn"}
        ]
    }
    svc.agents.update_agent(agent.id, {"character_book": book}, principal=SYSTEM)
    SHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    page.locator("#agent-select input").first.click()
    page.get_by_role("option", name=f"Mira · {agent.id[:8]}").click()
    expect(_field(page, "agent-name")).to_have_value("Mira")
    page.get_by_text("Prompt inspector and test chat").click()

    _field(page, "insp-message").fill("tell me about the foghorn")
    page.locator("#insp-preview").click()
    expect(page.locator("#insp-lore")).to_contain_text("Horn: key foghorn")
    parts = page.locator("#insp-parts")
    expect(parts).to_contain_text("Lorebook: Horn")
    expect(parts).to_contain_text("key: foghorn")
    expect(page.locator("#insp-summary")).to_contain_text("of 2048 in the context window")
    parts.locator("summary", has_text="Lorebook: Horn").click()
    expect(parts).to_contain_text("The foghorn sounds twice a minute.")

    # An unsaved edit: the test chat answers as the draft, and nothing is stored.
    _field(page, "agent-description").fill("{{char}} is a retired sailor.")
    _field(page, "insp-test-text").fill("Who are you?")
    page.locator("#insp-test-send").click()
    chat = page.locator("#insp-test-chat")
    expect(chat).to_contain_text("I am a retired sailor.")
    expect(chat).to_contain_text("Evening.")
    assert _conversations(svc) == 0
    assert svc.agents.get_card(agent.id).data.description == "{{char}} keeps the lighthouse."
    # The preview follows the draft too.
    page.locator("#insp-preview").click()
    expect(parts).to_contain_text("Mira is a retired sailor.")
    page.locator("#agent-inspector").screenshot(path=str(SHOTS / "inspector-1280.png"))

    page.set_viewport_size({"width": 390, "height": 900})
    expect(page.locator("#insp-preview")).to_be_visible()
    page.locator("#agent-inspector").screenshot(path=str(SHOTS / "inspector-390.png"))

    page.locator("#insp-test-clear").click()
    expect(chat).not_to_contain_text("I am a retired sailor.")


def test_the_form_becomes_a_draft_only_where_it_differs(insp_services: Services) -> None:
    from ui.agents.form import FORM_KEYS, form_values

    agent = insp_services.agents.create_agent(
        {"name": "Mira", "description": "Keeps the light."}, principal=SYSTEM
    )
    values = form_values(agent)
    same = tuple(values[k] for k in FORM_KEYS)
    assert handlers.draft_of(insp_services, agent.id, same) == (None, None)
    values.update(description="Sails.", max_new_tokens=32)
    changed = tuple(values[k] for k in FORM_KEYS)
    assert handlers.draft_of(insp_services, agent.id, changed) == (
        {"description": "Sails."},
        {"max_new_tokens": 32},
    )
