"""The chat's side panel in a real headless Chromium against the real app and the bundled
model: make a persona, set an author's note, chat, and see both in the prompt the agent reads
(and in what the services stored). Screenshots at desktop and phone widths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from container import Services
from core.principal import ANONYMOUS, SYSTEM
from tests.waiting import wait_until

MODEL_TIMEOUT_MS = 180_000
SHOTS = {1280: Path("/tmp/persona_desktop.png"), 390: Path("/tmp/persona_phone.png")}


def _field(page: Page, elem_id: str) -> Locator:
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def _pick(page: Page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option).click()


@pytest.mark.model
def test_pick_a_persona_and_an_authors_note_and_see_them_used(
    live_server: str, services: Services, page: Page
) -> None:
    agent = services.agents.create_agent(
        {
            "name": "Mira",
            "description": "{{char}} keeps the lighthouse.",
            "first_mes": "Evening, {{user}}.",
            "generation": {"max_new_tokens": 8, "temperature": 0.0},
        },
        principal=ANONYMOUS,
    )
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Chat").click()
    _pick(page, "chat-agent", f"Mira · {agent.id[:8]}")
    page.locator("#chat-new").click()
    expect(page.locator('#chatbot [data-testid="bot"]').first).to_contain_text("Evening")

    # A new persona, saved from the panel, becomes the open chat's.
    _field(page, "chat-persona-name").fill("Kit")
    _field(page, "chat-persona-description").fill("{{user}} is a stowaway with a limp.")
    page.locator("#chat-persona-new").click()
    expect(page.locator("#chat-panel-status")).to_contain_text("Saved persona Kit")
    expect(page.locator("#chat-persona input").first).to_have_value("Kit (default)")

    _field(page, "chat-note").fill("[Mira is tired tonight.]")
    _field(page, "chat-note-depth").fill("0")
    page.locator("#chat-note-save").click()
    expect(page.locator("#chat-panel-status")).to_contain_text("Saved.")

    _field(page, "chat-input").fill("Is the lamp lit?")
    page.locator("#chat-send").click()
    expect(page.locator('#chatbot [data-testid="bot"]')).to_have_count(2, timeout=MODEL_TIMEOUT_MS)

    page.get_by_text("The prompt the agent reads next").click()
    page.locator("#chat-show-prompt").click()
    prompt = _field(page, "chat-prompt")
    expect(prompt).to_have_value(
        re.compile(r"Kit is a stowaway with a limp\.[\s\S]*\[Mira is tired tonight\.\]")
    )

    convs = services.chat.list_conversations(agent.id, principal=SYSTEM)
    assert len(convs) == 1
    conv = convs[0]
    # The persona is the browser's own (its visitor identity), not a stranger's.
    assert conv.persona_id is not None
    assert services.personas.get(conv.persona_id, principal=SYSTEM).name == "Kit"
    assert services.personas.list(principal=ANONYMOUS) == []
    assert conv.authors_note == "[Mira is tired tonight.]" and conv.authors_note_depth == 0
    built = services.memory.preview(conv.id, principal=SYSTEM)
    assert built.messages[-1].content == "[Mira is tired tonight.]"
    assert "Kit is a stowaway with a limp." in built.messages[0].content

    for width, path in SHOTS.items():
        page.set_viewport_size({"width": width, "height": 1800})
        page.locator("#chat-side-panel").scroll_into_view_if_needed()
        wait_until(lambda: page.locator("#chat-side-panel").is_visible())
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
