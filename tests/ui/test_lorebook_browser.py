"""The lorebook panel in a real headless Chromium: add an entry with a key, edit it, search,
disable and enable it, and look at the panel at laptop and phone widths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from container import Services
from core.principal import SYSTEM

SHOTS = Path("/tmp/shots")


def _field(page: Page, elem_id: str) -> Locator:
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def _pick(page: Page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option).click()


def _close_toasts(page: Page) -> None:
    """Close the warning toasts (the refused key's), so the screenshots show the panel."""
    close = page.locator('[data-testid="toast-close"]')
    for number in reversed(range(close.count())):
        close.nth(number).click()
    expect(close).to_have_count(0)


def _entry(services: Services, agent_id: str) -> dict:
    book = services.agents.get_agent(agent_id).data["character_book"]
    assert book is not None and len(book["entries"]) == 1
    return book["entries"][0]


@pytest.mark.browser
def test_edit_a_lorebook_entry(
    page: Page, live_server: str, services: Services, tmp_path: Path
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    agent = services.agents.create_agent(
        {"name": "Mira", "description": "{{char}} keeps the lighthouse."}, principal=SYSTEM
    )
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    _pick(page, "agent-select", f"Mira · {agent.id[:8]}")
    expect(_field(page, "agent-name")).to_have_value("Mira")
    page.locator("#agent-tab-lorebook-button").click()  # the editor's Lorebook tab
    expect(page.locator("#lore-count")).to_contain_text("No entries yet")

    # Add, then give it a key and content.
    page.locator("#lore-add").click()
    expect(page.locator("#lore-status")).to_contain_text("Added entry #0")
    _field(page, "lore-keys").fill("harbour, /gulls?/i")
    _field(page, "lore-comment").fill("The harbour")
    _field(page, "lore-content").fill("The harbour froze over in the winter of the wreck.")
    page.locator("#lore-save").click()
    expect(page.locator("#lore-status")).to_contain_text("Saved entry #0")
    expect(page.locator("#lore-table")).to_contain_text("harbour, /gulls?/i")
    entry = _entry(services, agent.id)
    assert entry["keys"] == ["harbour", "/gulls?/i"]
    assert entry["content"].startswith("The harbour froze")

    # The saved entry fires in the prompt inspector beside the editor, with its key.
    page.get_by_text("Prompt inspector and test chat").click()
    _field(page, "insp-message").fill("Were there gulls on the pier?")
    page.locator("#insp-preview").click()
    # The first preview may load the model.
    expect(page.locator("#insp-lore")).to_contain_text("The harbour: key", timeout=60_000)
    expect(page.locator("#insp-parts")).to_contain_text("The harbour froze over")

    # Edit: the content and the order; a bad regex key is refused with RE2's reason.
    _field(page, "lore-content").fill("The harbour is frozen solid.")
    page.locator("#lore-order input").first.fill("5")
    page.locator("#lore-save").click()
    expect(page.locator("#lore-table")).to_contain_text("The harbour is frozen solid.")
    entry = _entry(services, agent.id)
    assert (entry["content"], entry["insertion_order"]) == ("The harbour is frozen solid.", 5)
    _field(page, "lore-keys").fill("harbour, /(a)\\1/")
    page.locator("#lore-save").click()
    expect(page.locator("#lore-status")).to_contain_text("RE2")
    expect(_field(page, "lore-keys")).to_have_value("harbour, /(a)\\1/")  # kept for fixing
    assert _entry(services, agent.id)["keys"] == ["harbour", "/gulls?/i"]
    _field(page, "lore-keys").fill("harbour, /gulls?/i")

    # Search.
    _field(page, "lore-search").fill("zebra")
    expect(page.locator("#lore-count")).to_contain_text("0 of 1 entries match")
    _field(page, "lore-search").fill("frozen")
    expect(page.locator("#lore-count")).to_contain_text("1 of 1 entries match")
    expect(page.locator("#lore-table")).to_contain_text("The harbour")

    # Disable, then enable, through the bulk selection.
    _pick(page, "lore-bulk", "#0 The harbour")
    page.locator("#lore-disable").click()
    expect(page.locator("#lore-status")).to_contain_text("Disabled 1 entries")
    assert _entry(services, agent.id)["enabled"] is False
    _pick(page, "lore-bulk", "#0 The harbour")
    page.locator("#lore-enable").click()
    expect(page.locator("#lore-status")).to_contain_text("Enabled 1 entries")
    assert _entry(services, agent.id)["enabled"] is True

    # Clicking a row opens it in the editor.
    _field(page, "lore-search").fill("")
    expect(page.locator("#lore-count")).to_contain_text("1 entries")
    _field(page, "lore-content").fill("")
    page.locator('#lore-table [data-testid="cell-0-5"]').click()
    expect(_field(page, "lore-content")).to_have_value("The harbour is frozen solid.")

    _close_toasts(page)
    page.locator("#agent-lorebook").scroll_into_view_if_needed()
    page.locator("#agent-lorebook").screenshot(path=str(SHOTS / "lorebook-1280.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#lore-books").get_by_text("World-info books").first.click()
    expect(page.locator("#lore-attached-note")).to_contain_text("No world-info book attached")
    page.locator("#lore-export").click()
    expect(page.locator("#lore-book-status")).to_contain_text("Exported 1 entries")
    expect(page.locator("#lore-export-file")).to_be_visible()
    world = tmp_path / "coast.json"
    world.write_text(
        json.dumps({"entries": {"0": {"uid": 0, "key": ["reef"], "content": "Rocks."}}})
    )
    page.locator("#lore-import input[type=file]").set_input_files(str(world))
    expect(page.locator("#lore-book-status")).to_contain_text("Imported coast")
    expect(page.locator("#lore-attached-note")).to_contain_text("Replies also read: coast")
    assert [b.name for b in services.lorebooks.attached(agent.id, principal=SYSTEM)] == ["coast"]
    _close_toasts(page)
    page.locator("#agent-lorebook").screenshot(path=str(SHOTS / "lorebook-390.png"))
