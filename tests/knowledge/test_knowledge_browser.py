"""The knowledge panel and cited replies in a real browser (headless Chromium, embedded Chroma).

Upload shows the job's progress bar and lists the document, "try a query" shows what a reply
would be grounded on, and a grounded chat reply shows its sources under it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from container import Services
from core.principal import ANONYMOUS, SYSTEM
from tests.knowledge.test_knowledge_api import BAKERY, LIGHTHOUSE
from tests.ui.test_studio_browser import _field, _pick

pytestmark = [pytest.mark.browser, pytest.mark.model]
TIMEOUT_MS = 120_000


@pytest.fixture
def services(kservices: Services) -> Services:
    """The app under test (``live_server``) runs on the knowledge test's services."""
    return kservices


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_upload_query_and_cited_reply_in_the_studio(
    page: Page,
    live_server: str,
    services: Services,
    tmp_path: Path,
) -> None:
    knowledge = services.knowledge
    kb = knowledge.create_base("Lore", principal=ANONYMOUS)
    first = knowledge.add_document(
        kb.id, "lighthouse.txt", LIGHTHOUSE.encode(), principal=ANONYMOUS
    )
    assert services.jobs.wait(first.job.id, timeout=120, principal=SYSTEM).status == "succeeded"  # type: ignore[union-attr]
    agent = services.agents.create_agent(
        {"name": "Keeper", "generation": {"max_new_tokens": 8, "temperature": 0}}, principal=SYSTEM
    )
    knowledge.attach(agent.id, kb.id, principal=ANONYMOUS)
    label = f"Keeper · {agent.id[:8]}"

    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    _pick(page, "agent-select", label)
    page.locator("#agent-tab-knowledge-button").click()  # the editor's Knowledge tab
    expect(page.locator("#kb-documents")).to_contain_text("lighthouse.txt", timeout=TIMEOUT_MS)

    upload = tmp_path / "bakery.txt"
    upload.write_text(BAKERY)
    page.locator("#kb-upload input[type=file]").set_input_files(str(upload))
    bar = page.locator("#kb-ingest-job-bar .anima-job")
    expect(bar).to_have_attribute("data-status", "succeeded", timeout=TIMEOUT_MS)
    expect(page.locator("#kb-documents")).to_contain_text("bakery.txt", timeout=TIMEOUT_MS)

    _field(page, "kb-query").fill("When is rye bread sold?")
    page.locator("#kb-search").click()
    expect(page.locator("#kb-hits")).to_contain_text("bakery.txt", timeout=TIMEOUT_MS)

    page.get_by_role("tab", name="Chat").click()
    _pick(page, "chat-agent", label)
    _field(page, "chat-input").fill("Who built the lighthouse on Gull Rock?")
    page.locator("#chat-send").click()
    chat = page.locator("#chatbot")
    expect(chat).to_contain_text("Sources", timeout=TIMEOUT_MS)
    expect(chat).to_contain_text("lighthouse.txt", timeout=TIMEOUT_MS)

    # Reopening the stored chat shows the same sources (from the message's trace).
    conv = services.chat.list_conversations(agent.id, principal=SYSTEM)[0]
    page.reload()
    page.get_by_role("tab", name="Chat").click()
    _pick(page, "chat-agent", label)
    _pick(page, "chat-conversation", f"{conv.title} · {conv.updated_at:%Y-%m-%d %H:%M}")
    expect(page.locator("#chatbot")).to_contain_text("lighthouse.txt", timeout=TIMEOUT_MS)
