"""Two browsers in the studio's Chat tab never see each other's chats.

Two Chromium contexts are two browsers (each its own cookie jar, so its own visitor cookie).
Each starts a chat with the same agent; each lists only its own. Replies come from a scripted
model: the point is who sees what, not what the model says.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from agents.chat import ConversationView
from agents.llm.base import StreamResult
from agents.records import ConversationRecord
from agents.schema import ChatMessage, GenerationSettings
from container import Services
from core.visitor import VISITOR_COOKIE
from tests.fake_backends import ScriptedBackend
from ui.chat.handlers import conversation_label

SCREENSHOTS = (Path("/tmp/privacy_ann.png"), Path("/tmp/privacy_bob.png"))


class _Echo(ScriptedBackend):
    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        yield "re: " + next(m.content for m in reversed(messages) if m.role == "user")


def _open_chat_tab(browser: Browser, url: str, label: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}/ui/")
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-agent input").first.click()
    page.get_by_role("option", name=label).click()
    return page


def _send(page: Page, text: str) -> None:
    page.locator("#chat-input").locator("textarea, input").first.fill(text)
    page.locator("#chat-send").click()
    expect(page.locator('#chatbot [data-testid="bot"]').last).to_contain_text(f"re: {text}")


def _listed(page: Page) -> list[str]:
    """The titles in the conversation picker, as the browser shows them."""
    page.locator("#chat-conversation input").first.click()
    options = page.locator("#chat-conversation [role=option]")
    # An option's text is its label, after a check mark when it is the picked one.
    titles = [options.nth(i).inner_text().replace("✓", "").strip() for i in range(options.count())]
    page.locator("#chat-conversation input").first.blur()  # closes the list
    return titles


@pytest.mark.browser
def test_two_browsers_never_see_each_others_chats(
    browser: Browser, live_server: str, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo = _Echo()
    monkeypatch.setattr(services.chat.llm, "get", lambda model=None, adapter=None: echo)
    made = httpx.post(f"{live_server}/api/agents", json={"name": "Mira", "first_mes": "Evening."})
    assert made.status_code == 201, made.text
    agent_id = made.json()["id"]
    label = f"Mira · {agent_id[:8]}"

    ann = _open_chat_tab(browser, live_server, label)
    _send(ann, "Ann's secret plan")
    bob = _open_chat_tab(browser, live_server, label)
    assert _listed(bob) == []  # Ann's chat exists, and Bob's browser does not list it
    _send(bob, "Bob's secret plan")

    ann_titles, bob_titles = _listed(ann), _listed(bob)
    assert len(ann_titles) == 1 and ann_titles[0].startswith("Ann's secret plan")
    assert len(bob_titles) == 1 and bob_titles[0].startswith("Bob's secret plan")
    for page, path in zip((ann, bob), SCREENSHOTS, strict=True):
        page.locator("#chat-conversation input").first.click()  # the picker open: one chat
        expect(page.locator("#chat-conversation [role=option]")).to_have_count(1)
        page.screenshot(path=str(path), full_page=True)

    # Each browser got its own visitor cookie, and each chat belongs to its browser.
    cookies = [
        {c["name"]: c["value"] for c in page.context.cookies()}[VISITOR_COOKIE]
        for page in (ann, bob)
    ]
    visitors = [services.visitors.verify(c) for c in cookies]
    assert None not in visitors and visitors[0] != visitors[1]
    with services.db.session() as s:
        rows = s.scalars(
            select(ConversationRecord).where(ConversationRecord.agent_id == agent_id)
        ).all()
        owners = {row.title: row.visitor_id for row in rows}
    assert owners == {"Ann's secret plan": visitors[0], "Bob's secret plan": visitors[1]}
    for page in (ann, bob):
        page.context.close()


def test_the_picker_marks_chats_from_before_owners_as_shared() -> None:
    when = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    conv = ConversationView(
        id="c1", agent_id="a1", title="Old", user_name="u", created_at=when, updated_at=when
    )
    assert conversation_label(conv) == "Old · 2026-12-01 09:30"
    shared = conv.model_copy(update={"shared": True})
    assert conversation_label(shared) == "Old · 2026-12-01 09:30 · shared"
