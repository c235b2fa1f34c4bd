"""A three-agent group chat and a chat file's round trip, in the browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from agents.conversations import MessageView
from container import Services
from core.principal import SYSTEM
from tests.waiting import wait_until

FAST = {"max_new_tokens": 6, "temperature": 0.0}
NAMES = ("Mira", "Tobin", "Essa")


def _agents(services: Services) -> dict[str, str]:
    ids = {}
    for name in NAMES:
        agent = services.agents.create_agent(
            {
                "name": name,
                "description": f"{{{{char}}}} is {name}, who speaks briefly.",
                "first_mes": f"I am {name}.",
                "generation": FAST,
            },
            principal=SYSTEM,
        )
        ids[name] = agent.id
    return ids


def _chats(services: Services, agent_id: str) -> list:
    return services.chat.list_conversations(agent_id, principal=SYSTEM)


def _messages(services: Services, conv_id: str) -> list[MessageView]:
    return services.chat.get_conversation(conv_id, principal=SYSTEM).messages


def _pick(page: Page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option).click()


def _open_group_panel(page: Page, live_server: str) -> None:
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Chat").click()
    page.get_by_text("Group chat and chat files").click()


@pytest.mark.browser
@pytest.mark.model
def test_three_agent_group_chat(page: Page, live_server: str, services: Services) -> None:
    ids = _agents(services)
    _open_group_panel(page, live_server)
    for name in NAMES:
        _pick(page, "group-members", f"{name} · {ids[name][:8]}")
    page.keyboard.press("Escape")
    page.get_by_label("Round robin").check()
    page.locator("#group-start").click()

    # Each member greets under its own name, in speaking order.
    bots = page.locator('#chatbot [data-testid="bot"]')
    expect(bots).to_have_count(3)
    for i, name in enumerate(NAMES):
        expect(bots.nth(i)).to_contain_text(f"{name}: I am {name}.")
    conv = wait_until(
        lambda: next(iter(services.chat.list_conversations(ids["Mira"], principal=SYSTEM)), None),
        timeout=30,
    )
    assert conv.members == [ids[n] for n in NAMES]

    # Round robin: the first member answers the first message.
    page.locator("#chat-input textarea").fill("Hello everyone.")
    page.locator("#chat-send").click()

    def reply_after_the_message() -> MessageView | None:
        messages = services.chat.get_conversation(conv.id, principal=SYSTEM).messages
        answered = len(messages) == 5 and messages[-1].role == "assistant"
        return messages[-1] if answered else None

    reply = wait_until(reply_after_the_message, timeout=120)
    assert reply.name == "Mira" and reply.speaker_id == ids["Mira"]

    # "Let X reply": Essa speaks now, under her name.
    expect(page.locator("#group-let-reply")).to_be_visible()
    _pick(page, "group-speaker", "Essa")
    page.locator("#group-let").click()
    essa = wait_until(
        lambda: (
            (m := services.chat.get_conversation(conv.id, principal=SYSTEM).messages[-1]).name
            == "Essa"
            and m
        ),
        timeout=120,
    )
    assert essa.speaker_id == ids["Essa"]
    expect(bots.last).to_contain_text("Essa:")
    expect(bots).to_have_count(5)

    page.screenshot(path="/tmp/group_chat_1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 900})
    page.screenshot(path="/tmp/group_chat_390.png", full_page=True)


@pytest.mark.browser
@pytest.mark.model
def test_jsonl_round_trip_in_the_browser(
    page: Page, live_server: str, services: Services, tmp_path: Path
) -> None:
    ids = _agents(services)
    conv = services.group_chat.create_group(
        list(ids.values()), "round_robin", "Ned", principal=SYSTEM
    )
    services.chat.send(conv.id, "Hello all.", principal=SYSTEM).collect()
    services.chat.regenerate(conv.id, principal=SYSTEM).collect()
    original = services.chat.get_conversation(conv.id, principal=SYSTEM).messages

    _open_group_panel(page, live_server)
    _pick(page, "chat-agent", f"Mira · {ids['Mira'][:8]}")
    page.locator("#chat-conversation input").first.click()
    page.locator("#chat-conversation").get_by_role("option").first.click()
    expect(page.locator('#chatbot [data-testid="bot"]')).to_have_count(4)

    page.locator("#chat-export-jsonl").click()
    link = page.locator('#chat-export-file a[data-testid="download-link"]').first
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "exported.jsonl"
    saved.write_bytes(Path(download.value.path()).read_bytes())
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert lines[0]["user_name"] == "Ned"
    assert [m["name"] for m in lines[1:]] == ["Mira", "Tobin", "Essa", "Ned", "Mira"]

    # Import it onto Tobin with the others as members: a group chat again, all of it kept.
    _pick(page, "chat-agent", f"Tobin · {ids['Tobin'][:8]}")
    for name in ("Mira", "Essa"):
        _pick(page, "group-members", f"{name} · {ids[name][:8]}")
    page.keyboard.press("Escape")
    with page.expect_file_chooser() as chooser:
        page.locator("#chat-import").click()
    chooser.value.set_files(str(saved))
    expect(page.locator("#chat-status")).to_contain_text("Imported")
    imported = wait_until(
        lambda: next(iter(services.chat.list_conversations(ids["Tobin"], principal=SYSTEM)), None),
        timeout=30,
    )
    back = services.chat.get_conversation(imported.id, principal=SYSTEM)
    assert back.members == [ids["Tobin"], ids["Mira"], ids["Essa"]]
    fields = ("role", "versions", "selected", "name", "speaker_id")
    assert [[getattr(m, f) for f in fields] for m in back.messages] == [
        [getattr(m, f) for f in fields] for m in original
    ]
    expect(page.locator('#chatbot [data-testid="bot"]')).to_have_count(4)
    page.screenshot(path="/tmp/group_files_1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 900})
    page.screenshot(path="/tmp/group_files_390.png", full_page=True)
