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
from playwright.sync_api import Dialog, Locator, Page, expect

from agents.service import AgentView
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


def _set_number(page: Page, elem_id: str, value: str) -> None:
    """Type a number and keep it. A freshly opened tab is drawn, and the page's load updates
    land, a little after the click: one landing late puts the default back over what was
    typed. So type again until the value holds for a moment."""
    box = _number(page, elem_id)
    for _ in range(20):
        box.fill(value)
        box.press("Enter")
        page.wait_for_timeout(300)
        if box.input_value() == value:
            page.wait_for_timeout(700)
            if box.input_value() == value:
                return
    raise AssertionError(f"{elem_id} did not keep the value {value}")


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
    page.locator("#agent-tab-generation-button").click()
    _set_number(page, "agent-max-new-tokens", "24")
    _set_number(page, "agent-temperature", "0")
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
    greetings = page.locator("#agent-alt-greetings textarea")
    expect(greetings).to_have_count(2)
    expect(greetings.nth(0)).to_have_value("Oh! A visitor.\n\nSit, sit.")
    expect(greetings.nth(1)).to_have_value("Hush, listen.")

    # Edit one field and add an avatar: only that field changes, the rest survives as imported.
    _field(page, "agent-personality").fill("dreamy, soft-spoken")
    page.locator("#agent-avatar input[type=file]").set_input_files(str(avatar_file))
    expect(page.locator("#agent-avatar img").first).to_be_visible()
    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("Saved Lyra: personality, avatar")
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
    assert values["alternate_greetings"] == ["First line.\n\nSecond paragraph.", "Another."]
    # The separator text of the old single textarea still reads as the same list.
    joined = "First line.\n\nSecond paragraph.\n---\nAnother."
    assert update_patch(agent, {**values, "alternate_greetings": joined}) == {}
    assert text_to_greetings(joined) == values["alternate_greetings"]

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


# ----- The editor: greetings list, unsaved-change warning, tabs and phone width -----------
EDITOR_TABS = ("card", "lorebook", "knowledge", "voice", "finetune", "chain", "generation")
SHOTS = Path("/tmp/shots")


def _open_agent(page: Page, agent: AgentView) -> None:
    """Pick ``agent`` in the editor and wait until its card has loaded (typing earlier would
    be overwritten by the load)."""
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    _pick(page, "agent-select", f"{agent.name} · {agent.id[:8]}")
    expect(_field(page, "agent-name")).to_have_value(agent.name)


def _greeting_button(page: Page, index: int, action: str) -> Locator:
    return (
        page.locator("#agent-alt-greetings .anima-greeting")
        .nth(index)
        .locator(f"button[data-action={action}]")
    )


@pytest.mark.browser
def test_greetings_are_added_removed_and_reordered_then_saved_and_reloaded(
    page: Page, live_server: str, services: Services
) -> None:
    agent = services.agents.create_agent(
        {"name": "Orla", "first_mes": "Hello.", "alternate_greetings": ["One.", "Two.", "Three."]},
        principal=SYSTEM,
    )
    page.goto(f"{live_server}/ui/")
    _open_agent(page, agent)
    boxes = page.locator("#agent-alt-greetings textarea")
    expect(boxes).to_have_count(3)

    _greeting_button(page, 0, "down").click()  # Two, One, Three
    _greeting_button(page, 2, "remove").click()  # Two, One
    expect(boxes).to_have_count(2)
    page.locator("#agent-alt-greetings .anima-greetings-add").click()
    expect(boxes).to_have_count(3)
    page.keyboard.type("Four,\n\nin two paragraphs.")  # the new box has the focus
    expect(_greeting_button(page, 0, "up")).to_be_disabled()
    expect(_greeting_button(page, 2, "down")).to_be_disabled()

    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("Saved Orla: 3 greetings")
    expected = ["Two.", "One.", "Four,\n\nin two paragraphs."]
    assert services.agents.get_agent(agent.id).data["alternate_greetings"] == expected

    page.reload()
    _open_agent(page, agent)
    expect(boxes).to_have_count(3)
    for index, text in enumerate(expected):
        expect(boxes.nth(index)).to_have_value(text)


@pytest.mark.browser
def test_unsaved_changes_are_kept_until_the_user_lets_them_go(
    page: Page, live_server: str, services: Services
) -> None:
    orla = services.agents.create_agent({"name": "Orla"}, principal=SYSTEM)
    bram = services.agents.create_agent({"name": "Bram"}, principal=SYSTEM)
    page.goto(f"{live_server}/ui/")
    _open_agent(page, orla)
    typed = "Keeps the lighthouse; typed, never saved."
    _field(page, "agent-description").fill(typed)
    expect(page.locator("body.anima-dirty")).to_have_count(1)

    # Picking another agent asks; Cancel keeps the typed text and puts the picker back.
    dialogs: list[tuple[str, str]] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append((dialog.type, dialog.message))
        dialog.dismiss()

    page.on("dialog", dismiss)
    with page.expect_event("dialog"):
        _pick(page, "agent-select", f"Bram · {bram.id[:8]}")
    expect(page.locator("#agent-select input").first).to_have_value(f"Orla · {orla.id[:8]}")
    assert dialogs and dialogs[0][0] == "confirm" and "unsaved changes" in dialogs[0][1]
    expect(_field(page, "agent-description")).to_have_value(typed)
    with page.expect_event("dialog"):
        page.locator("#agent-new").click()
    expect(page.locator("#agent-select input").first).to_have_value(f"Orla · {orla.id[:8]}")
    assert len(dialogs) == 2  # one question per action
    expect(_field(page, "agent-description")).to_have_value(typed)
    expect(_field(page, "agent-name")).to_have_value("Orla")
    page.remove_listener("dialog", dismiss)

    # Saving makes the form clean: switching now loads the other agent without a question.
    page.locator("#agent-save").click()
    expect(page.locator("#agent-status")).to_contain_text("Saved Orla: description")
    expect(page.locator("body.anima-dirty")).to_have_count(0)
    # No handler is registered now: Playwright would dismiss a question, which keeps Orla.
    _open_agent(page, bram)
    assert page.evaluate("window.animaEditor.dirty") is False

    # Closing the tab with edits makes the browser ask ("leave site?"); staying keeps them.
    _field(page, "agent-description").fill("Bram's draft.")
    with page.expect_event("dialog") as leaving:
        page.close(run_before_unload=True)
    assert leaving.value.type == "beforeunload"
    leaving.value.dismiss()
    expect(_field(page, "agent-description")).to_have_value("Bram's draft.")


@pytest.mark.browser
def test_editor_tabs_at_laptop_width_and_the_editor_on_a_phone(
    page: Page, live_server: str, services: Services
) -> None:
    """Screenshots of every tab at 1280 px and of the editor at 390 px wide, which must not
    scroll sideways (the columns stack, the tab strip scrolls on its own)."""
    agent = services.agents.create_agent(
        {
            "name": "Orla",
            "description": "{{char}} keeps the lighthouse on the northern cape.",
            "first_mes": "The lamp is lit. Come in out of the rain.",
            "alternate_greetings": ["Storm tonight.", "Mind the stairs;\n\nthey are wet."],
            "tags": ["sea", "lighthouse"],
        },
        principal=SYSTEM,
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/ui/")
    _open_agent(page, agent)
    for tab in EDITOR_TABS:
        page.locator(f"#agent-tab-{tab}-button").click()
        expect(page.locator(f"#agent-tab-{tab}")).to_be_visible()
        # The side column stays beside the tabs: Save is in view on every tab.
        expect(page.locator("#agent-save")).to_be_in_viewport()
        page.screenshot(path=str(SHOTS / f"editor-{tab}.png"), full_page=True)
    expect(page.locator("#agent-lorebook")).to_have_count(1)

    page.locator("#agent-tab-card-button").click()
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#agent-save")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    side = page.locator("#agent-side").bounding_box()
    main = page.locator("#agent-main").bounding_box()
    assert side and main and main["y"] >= side["y"] + side["height"] - 1  # stacked
    page.locator("#agent-tab-generation-button").click()  # scrolled into reach in the strip
    expect(page.locator("#agent-max-new-tokens")).to_be_visible()
    page.locator("#agent-tab-card-button").click()
    page.screenshot(path=str(SHOTS / "editor-phone.png"), full_page=True)
