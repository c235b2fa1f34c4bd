"""The Chat tab's message tools in a real headless Chromium, against the real app and the
bundled model: swipes, continue, impersonate, edit, delete, branch, and a reload that keeps
the conversation open. The conversation is set up through the services (faster than typing);
everything the test checks afterwards it does through the page, then reads the store.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from container import Services
from core.principal import SYSTEM
from tests.waiting import wait_until

FAST = {"max_new_tokens": 6, "temperature": 0.0}
MODEL_TIMEOUT_MS = 180_000
SHOTS = Path("/tmp")

pytestmark = [pytest.mark.browser, pytest.mark.model]


def _conversation(services: Services, sends: int = 1) -> tuple[str, str]:
    agent = services.agents.create_agent(
        {
            "name": "Mira",
            "description": "{{char}} is a lighthouse keeper who speaks briefly.",
            "first_mes": "Evening, {{user}}.",
            "alternate_greetings": ["Ah, {{user}}, you made it."],
            "generation": FAST,
        },
        principal=SYSTEM,
    )
    conv = services.chat.create_conversation(agent.id, "Ned", principal=SYSTEM)
    for text in ["Is the lamp lit?", "And the fog?"][:sends]:
        services.chat.send(conv.id, text, principal=SYSTEM).collect()
    return agent.id, conv.id


def _open(page: Page, live_server: str, agent_id: str, title: str) -> None:
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-agent input").first.click()
    page.get_by_role("option", name=f"Mira · {agent_id[:8]}").click()
    page.locator("#chat-conversation input").first.click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(title)}")).click()


def _bots(page: Page) -> Locator:
    return page.locator('#chatbot [data-testid="bot"]')


def _users(page: Page) -> Locator:
    return page.locator('#chatbot [data-testid="user"]')


def _messages(services: Services, conv_id: str) -> list:
    return services.chat.get_conversation(conv_id, principal=SYSTEM).messages


def test_swipes_continue_and_impersonate(page: Page, live_server: str, services: Services) -> None:
    agent_id, conv_id = _conversation(services)
    first = _messages(services, conv_id)[-1]
    _open(page, live_server, agent_id, "Is the lamp lit?")
    expect(_bots(page)).to_have_count(2)
    counter = page.locator("#chat-swipe-count")
    expect(counter).to_have_text("1/1")
    page.screenshot(path=str(SHOTS / "swipes_chat_1280.png"), full_page=True)

    # Right past the newest version writes a new one and shows it.
    page.locator("#chat-swipe-right").click()
    wait_until(
        lambda: len(_messages(services, conv_id)[-1].versions) == 2,
        timeout=MODEL_TIMEOUT_MS / 1000,
        message="a second version",
    )
    expect(counter).to_have_text("2/2", timeout=MODEL_TIMEOUT_MS)
    # Left shows the first one again, and that is what the store now holds as history.
    page.locator("#chat-swipe-left").click()
    expect(counter).to_have_text("1/2")
    expect(_bots(page).last).to_have_text(first.content.strip())
    assert _messages(services, conv_id)[-1].selected == 0

    # Continue writes more onto the shown version.
    page.locator("#chat-continue").click()
    longer = wait_until(
        lambda: (m := _messages(services, conv_id)[-1]).content != first.content and m,
        timeout=MODEL_TIMEOUT_MS / 1000,
        message="the continued reply",
    )
    assert longer.content.startswith(first.content)
    assert longer.versions[0] == longer.content
    expect(_bots(page).last).to_contain_text(first.content.strip()[:12])

    # Impersonate drafts the user's line into the box, and stores nothing.
    stored = _messages(services, conv_id)
    box = page.locator("#chat-input textarea")
    page.locator("#chat-impersonate").click()
    expect(box).to_have_value(re.compile(r"\S"), timeout=MODEL_TIMEOUT_MS)
    expect(page.locator("#chat-impersonate")).to_be_enabled()
    assert [m.content for m in _messages(services, conv_id)] == [m.content for m in stored]


def test_edit_delete_and_branch(page: Page, live_server: str, services: Services) -> None:
    agent_id, conv_id = _conversation(services, sends=2)
    _open(page, live_server, agent_id, "Is the lamp lit?")
    expect(_bots(page)).to_have_count(3)

    # Edit the first user message in place: a new version, the old one kept.
    bubble = _users(page).first
    bubble.hover()
    page.locator("#chatbot").get_by_role("button", name="Edit").nth(1).click()
    editor = page.locator("#chatbot textarea").first
    editor.fill("Is the great lamp lit?")
    page.locator("#chatbot").get_by_role("button", name=re.compile("submit", re.I)).click()
    wait_until(
        lambda: (
            _messages(services, conv_id)[1].versions
            == ["Is the lamp lit?", "Is the great lamp lit?"]
        ),
        timeout=30,
        message="the edit stored",
    )
    expect(_users(page).first).to_have_text("Is the great lamp lit?")

    # Pick the second user message and delete it and everything after it.
    _users(page).nth(1).click()
    expect(page.locator("#chat-picked")).to_contain_text("And the fog?")
    page.locator("#chat-delete-after").click()
    expect(_users(page)).to_have_count(1)
    assert [m.role for m in _messages(services, conv_id)] == ["assistant", "user", "assistant"]

    # Pick the user message and branch: the new chat opens with the history up to it.
    _users(page).first.click()
    expect(page.locator("#chat-picked")).to_contain_text("Is the great lamp lit?")
    page.locator("#chat-branch").click()
    expect(page.locator("#chat-conversation input").first).to_have_value(
        re.compile("^↳ branch of Is the lamp lit")
    )
    expect(_bots(page)).to_have_count(1)
    branches = [
        c
        for c in services.chat.list_conversations(agent_id, principal=SYSTEM)
        if c.parent_id == conv_id
    ]
    assert len(branches) == 1
    branch = branches[0]
    assert [m.content for m in _messages(services, branch.id)] == [
        "Evening, Ned.",
        "Is the great lamp lit?",
    ]

    # Delete one message of the branch: only it goes.
    _users(page).first.click()
    page.locator("#chat-delete").click()
    expect(_users(page)).to_have_count(0)
    assert [m.content for m in _messages(services, branch.id)] == ["Evening, Ned."]
    assert len(_messages(services, conv_id)) == 3  # the original is untouched
    page.screenshot(path=str(SHOTS / "swipes_branch_1280.png"), full_page=True)


def test_a_reload_keeps_the_conversation_open(
    page: Page, live_server: str, services: Services
) -> None:
    agent_id, _ = _conversation(services)
    _open(page, live_server, agent_id, "Is the lamp lit?")
    expect(_bots(page)).to_have_count(2)
    # The page's address carries the open chat (set by the browser once the pick lands).
    page.wait_for_url(re.compile(r"[?&]chat=[0-9a-f]+"))
    page.reload()
    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#chat-conversation input").first).to_have_value(
        re.compile("^Is the lamp lit")
    )
    expect(page.locator("#chat-agent input").first).to_have_value(f"Mira · {agent_id[:8]}")
    expect(_bots(page)).to_have_count(2)
    expect(_users(page).first).to_have_text("Is the lamp lit?")
    expect(page.locator("#chat-swipe-count")).to_have_text("1/1")
    page.set_viewport_size({"width": 390, "height": 900})
    page.screenshot(path=str(SHOTS / "swipes_chat_390.png"), full_page=True)
