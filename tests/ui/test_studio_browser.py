"""The studio in a real headless Chromium against the real app and the bundled model.

One user journey end to end: create an agent in the form, start a chat with it, send a
message and watch the reply stream in; then check what the services stored. A small
non-browser test pins the form <-> card translation the Agents tab relies on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect

from container import Services
from core.principal import SYSTEM
from tests.waiting import wait_until
from ui.agents.form import create_payload, form_values, text_to_greetings, update_patch

SCREENSHOT = Path("/tmp/studio.png")
SCREENSHOT_AGENTS = Path("/tmp/studio-agents.png")
# The CPU model converts and loads on the first reply: allow for it.
MODEL_TIMEOUT_MS = 180_000

GREETING = "Welcome to the Rusty Anchor, traveller. What will it be?"

# Records the text of the newest bot bubble every time the chat's DOM changes, so the test
# can tell a streamed reply (several lengths) from one that arrived all at once.
WATCH_BOTS = """
() => {
  const root = document.querySelector('#chatbot');
  window.__botTexts = [];
  new MutationObserver(() => {
    const bots = root.querySelectorAll('[data-testid="bot"]');
    if (!bots.length) return;
    const text = bots[bots.length - 1].innerText.trim();
    const seen = window.__botTexts;
    const last = seen[seen.length - 1];
    if (!last || last.count !== bots.length || last.text !== text) {
      seen.push({count: bots.length, text: text});
    }
  }).observe(root, {subtree: true, childList: true, characterData: true});
}
"""


def _field(page: Page, elem_id: str) -> Locator:
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def _number(page: Page, elem_id: str) -> Locator:
    return page.locator(f"#{elem_id} input[type=number]").first


def _pick(page: Page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option).click()


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text)


@pytest.mark.browser
@pytest.mark.model
def test_create_agent_then_chat_with_streaming(
    page: Page, live_server: str, services: Services
) -> None:
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    expect(page.locator("#agent-save")).to_be_visible()

    # --- Agents tab: create ---
    _field(page, "agent-name").fill("Bram")
    _field(page, "agent-description").fill(
        "{{char}} is the cheerful innkeeper of the Rusty Anchor, a harbour tavern."
    )
    _field(page, "agent-personality").fill("warm, talkative, proud of his fish stew")
    _field(page, "agent-first-mes").fill(GREETING)
    _number(page, "agent-max-new-tokens").fill("24")
    _number(page, "agent-temperature").fill("0")
    _number(page, "agent-temperature").press("Enter")
    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("Created Bram")
    page.screenshot(path=str(SCREENSHOT_AGENTS), full_page=True)

    agents = services.agents.list_agents()
    assert [a.name for a in agents] == ["Bram"]
    agent = agents[0]
    assert agent.data["first_mes"] == GREETING
    assert "Rusty Anchor" in agent.data["description"]
    assert agent.generation.max_new_tokens == 24
    assert agent.generation.temperature == 0.0
    # The picker now holds the saved agent, so a second Save updates instead of duplicating.
    expect(page.locator("#agent-select input").first).to_have_value(f"Bram · {agent.id[:8]}")

    # --- Chat tab: new chat shows the greeting ---
    page.get_by_role("tab", name="Chat").click()
    _pick(page, "chat-agent", f"Bram · {agent.id[:8]}")
    page.locator("#chat-new").click()
    bots = page.locator('#chatbot [data-testid="bot"]')
    expect(bots.first).to_contain_text("Welcome to the Rusty Anchor")
    assert bots.count() == 1

    # --- Send: the reply streams into a new bubble ---
    page.evaluate(WATCH_BOTS)
    _field(page, "chat-input").fill("Hello Bram! What is on the menu tonight?")
    page.locator("#chat-send").click()
    expect(page.locator('#chatbot [data-testid="user"]').last).to_contain_text(
        "What is on the menu tonight?"
    )
    expect(bots).to_have_count(2, timeout=MODEL_TIMEOUT_MS)
    expect(bots.nth(1)).to_have_text(re.compile(r"\w"), timeout=MODEL_TIMEOUT_MS)
    # The input was cleared for the next message.
    expect(_field(page, "chat-input")).to_have_value("")

    # Wait until the reply is stored (the stream has ended), then compare with the page.
    conversations = services.chat.list_conversations(agent.id, principal=SYSTEM)
    assert len(conversations) == 1
    conv_id = conversations[0].id

    def stored_reply() -> str | None:
        msgs = services.chat.get_conversation(conv_id, principal=SYSTEM).messages
        return msgs[-1].content if len(msgs) == 3 and msgs[-1].role == "assistant" else None

    reply = wait_until(
        stored_reply, timeout=MODEL_TIMEOUT_MS / 1000, interval=0.2, message="the stored reply"
    )
    assert reply.strip(), "the stored reply is blank"
    messages = services.chat.get_conversation(conv_id, principal=SYSTEM).messages
    assert [m.role for m in messages] == ["assistant", "user", "assistant"]
    assert messages[0].content == GREETING
    assert messages[1].content == "Hello Bram! What is on the menu tonight?"
    assert conversations[0].title.startswith("Hello Bram")

    shown = bots.nth(1).inner_text()
    assert _alnum(reply)[:20] in _alnum(shown)

    # Streaming: the new bubble was seen with at least two different, non-empty texts, each
    # a prefix-ish growth of the final reply rather than one final paint.
    seen = page.evaluate("window.__botTexts")
    growing = [s["text"] for s in seen if s["count"] == 2 and s["text"]]
    assert len(set(growing)) >= 2, f"reply did not stream: {growing}"
    lengths = [len(t) for t in growing]
    assert lengths[0] < lengths[-1]

    # The conversation dropdown offers the chat for reopening.
    expect(page.locator("#chat-conversation input").first).to_have_value(re.compile(r"^Hello Bram"))
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # --- Regenerate: a new version streams in, the old one is kept as an alternative ---
    page.locator("#chat-regenerate").click()
    alternatives = wait_until(
        lambda: services.chat.get_conversation(conv_id, principal=SYSTEM).messages[-1].alternatives,
        timeout=MODEL_TIMEOUT_MS / 1000,
        interval=0.2,
        message="the regenerated reply",
    )
    assert alternatives == [reply]
    last = services.chat.get_conversation(conv_id, principal=SYSTEM).messages[-1]
    assert last.content.strip()
    expect(bots).to_have_count(2)
    expect(bots.nth(1)).to_contain_text(last.content.split()[0])


@pytest.mark.browser
def test_import_edit_export_and_delete(
    page: Page, live_server: str, services: Services, tmp_path: Path
) -> None:
    card = {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Lyra",
            "description": "{{char}} is a star-gazing bard.",
            "personality": "dreamy",
            "scenario": "",
            "first_mes": "The stars are bright tonight, {{user}}.",
            "mes_example": "",
            "creator_notes": "",
            "system_prompt": "",
            "post_history_instructions": "",
            "alternate_greetings": ["Oh! A visitor.\n\nSit, sit.", "Hush, listen."],
            "tags": ["bard"],
            "creator": "someone",
            "character_version": "1",
            "extensions": {"custom": {"keep": True}},
        },
    }
    card_file = tmp_path / "lyra.json"
    card_file.write_text(json.dumps(card))
    avatar_file = tmp_path / "face.png"
    Image.new("RGB", (32, 32), (200, 30, 90)).save(avatar_file)

    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Import").click()
    page.locator("#import-file input[type=file]").set_input_files(str(card_file))
    expect(page.locator("#import-status")).to_contain_text("Imported Lyra")
    [agent] = services.agents.list_agents()
    label = f"Lyra · {agent.id[:8]}"

    # The import refreshed the Agents tab's picker; choosing it fills the form.
    page.get_by_role("tab", name="Agents").click()
    _pick(page, "agent-select", label)
    expect(_field(page, "agent-name")).to_have_value("Lyra")
    expect(_field(page, "agent-alt-greetings")).to_have_value(
        "Oh! A visitor.\n\nSit, sit.\n---\nHush, listen."
    )

    # Edit one field and add an avatar: only that field changes, the rest survives as imported.
    _field(page, "agent-personality").fill("dreamy, soft-spoken")
    page.locator("#agent-avatar input[type=file]").set_input_files(str(avatar_file))
    expect(page.locator("#agent-avatar img").first).to_be_visible()
    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("Saved Lyra")
    saved = services.agents.get_agent(agent.id)
    assert saved.data["personality"] == "dreamy, soft-spoken"
    assert saved.data["alternate_greetings"] == card["data"]["alternate_greetings"]
    assert saved.data["extensions"]["custom"] == {"keep": True}
    assert saved.version == agent.version + 1
    assert services.agents.avatar(agent.id) is not None

    # Export as JSON: the download is the stored card.
    page.get_by_text("Export card").click()
    page.locator("#agent-export-json").click()
    link = page.locator('#agent-export-file a[data-testid="download-link"]').first
    expect(link).to_have_attribute("download", "Lyra.json")
    with page.expect_download() as download:
        link.click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["data"]["name"] == "Lyra"
    assert exported["data"]["personality"] == "dreamy, soft-spoken"

    # Delete asks first; Cancel keeps the agent, confirming removes it everywhere.
    page.locator("#agent-delete").click()
    page.locator("#agent-delete-cancel").click()
    assert len(services.agents.list_agents()) == 1
    page.locator("#agent-delete").click()
    page.locator("#agent-delete-confirm").click()
    expect(page.locator("#agent-status")).to_contain_text("Deleted Lyra")
    assert services.agents.list_agents() == []
    expect(_field(page, "agent-name")).to_have_value("")
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-agent input").first.click()
    expect(page.get_by_role("option", name=label)).to_have_count(0)


def test_form_translation_keeps_untouched_fields_out_of_the_patch(services: Services) -> None:
    """Saving without edits sends nothing; one edit sends one key; greetings keep paragraphs."""
    agent = services.agents.create_agent(
        {
            "name": "Ysolde",
            "first_mes": "Hi.",
            "alternate_greetings": ["First line.\n\nSecond paragraph.", "Another."],
            "tags": ["fantasy", "mage"],
            "generation": {"max_new_tokens": 40},
        },
        principal=SYSTEM,
    )
    values = form_values(agent)
    assert update_patch(agent, values) == {}
    assert text_to_greetings(values["alternate_greetings"]) == [
        "First line.\n\nSecond paragraph.",
        "Another.",
    ]

    edited = {**values, "tags": "fantasy, mage, , healer", "top_k": 10.0}
    assert update_patch(agent, edited) == {
        "tags": ["fantasy", "mage", "healer"],
        "generation": {"top_k": 10},
    }
    saved = services.agents.update_agent(agent.id, update_patch(agent, edited), principal=SYSTEM)
    assert saved.data["alternate_greetings"] == agent.data["alternate_greetings"]
    assert saved.generation.max_new_tokens == 40
    assert saved.generation.top_k == 10

    payload = create_payload({**form_values(None), "name": " Neo ", "nickname": ""})
    assert payload["name"] == "Neo"
    assert "nickname" not in payload
    assert services.agents.create_agent(payload, principal=SYSTEM).generation.max_new_tokens == 160
