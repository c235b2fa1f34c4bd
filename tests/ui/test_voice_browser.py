"""Voice in the studio, in headless Chromium: the agent editor checks a sample as soon as it is
given and shows the similarity once it is the agent's voice; in the Chat tab the microphone
(Chromium's fake capture device playing a WAV of a spoken question) starts a voice turn that
is transcribed, answered in text and played back as audio."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from container import Services
from core.principal import SYSTEM
from tests.waiting import wait_until
from voice.audio import Audio, encode_wav

SLOW_MS = 240_000

pytestmark = [pytest.mark.browser, pytest.mark.model]


@pytest.fixture(scope="module")
def question_wav(fake_microphone: Path, voice_pool) -> Path:  # type: ignore[no-untyped-def]
    """A spoken question followed by silence, as what the fake microphone plays (in a loop)."""
    spoken = voice_pool.tts("piper").synthesize("Hello! What is your name?").resampled(16000)
    silence = np.zeros(16000 * 4, np.float32)
    audio = Audio(np.concatenate([silence[:8000], spoken.samples, silence]), 16000)
    fake_microphone.write_bytes(encode_wav(audio))
    return fake_microphone


@pytest.fixture
def page(page: Page, question_wav: Path) -> Page:
    """The session browser's tab, taller, allowed the microphone (which plays ``question_wav``)."""
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.context.grant_permissions(["microphone"])
    return page


def _pick(page: Page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option).click()


def test_voice_panel_checks_the_sample_and_shows_the_similarity(
    live_server: str,
    services: Services,
    page: Page,
    reference_voices: dict[str, Path],
    tmp_path: Path,
) -> None:
    agent = services.agents.create_agent({"name": "Ked"}, principal=SYSTEM)
    short = tmp_path / "short.wav"
    short.write_bytes(reference_voices["ked"].read_bytes()[: 16000 * 2 * 4])  # cut: 4 s
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Agents").click()  # the studio opens on the Gallery
    _pick(page, "agent-select", f"Ked · {agent.id[:8]}")
    page.locator("#agent-tab-voice-button").click()  # the editor's Voice tab
    expect(page.locator("#agent-voice-status")).to_contain_text("No voice yet")

    sample_input = page.locator("#agent-voice-sample input[type=file]")
    sample_input.set_input_files(str(short))
    expect(page.locator("#agent-voice-quality")).to_contain_text("truncated")
    page.locator("#agent-voice-sample button[aria-label='Clear']").click()
    sample_input.set_input_files(str(reference_voices["ked"]))
    expect(page.locator("#agent-voice-quality")).to_contain_text("usable")

    page.locator("#agent-voice-save").click()
    expect(page.locator("#agent-voice-quality")).to_contain_text("consent")
    page.locator("#agent-voice-consent input").check()
    page.locator("#agent-voice-save").click()
    expect(page.locator("#agent-voice-status")).to_contain_text(
        "similarity to the sample", timeout=SLOW_MS
    )
    page.screenshot(path="/tmp/studio-voice-panel.png", full_page=True)
    profile = services.voice.get_profile(agent.id)
    assert f"{profile.similarity_after:.2f}" in page.locator("#agent-voice-status").inner_text()
    assert "agreed" in profile.consent


def test_microphone_turn_is_answered_in_text_and_voice(
    live_server: str, services: Services, page: Page
) -> None:
    agent = services.agents.create_agent(
        {"name": "Nell", "first_mes": "Hi!", "generation": {"max_new_tokens": 16}}, principal=SYSTEM
    )
    page.goto(f"{live_server}/ui/")
    page.get_by_role("tab", name="Chat").click()
    _pick(page, "chat-agent", f"Nell · {agent.id[:8]}")
    page.locator("#chat-mic").get_by_role("button", name="Record").click()
    expect(page.locator("#chat-voice-caption")).to_contain_text("You said", timeout=SLOW_MS)
    expect(page.locator('#chatbot [data-testid="user"]').first).to_contain_text(
        re.compile("name", re.I), timeout=SLOW_MS
    )
    # the greeting, then the spoken question's answer, streamed in text and played as audio
    page.locator("#chat-mic").get_by_role("button", name="Stop").click()  # before it loops
    expect(page.locator('#chatbot [data-testid="bot"]').nth(1)).not_to_be_empty(timeout=SLOW_MS)
    expect(page.locator("#chat-voice-reply audio, #chat-voice-reply video").first).to_be_attached(
        timeout=SLOW_MS
    )
    conv = services.chat.list_conversations(agent.id, principal=SYSTEM)[0]
    messages = wait_until(
        lambda: (
            m
            if len(m := services.chat.get_conversation(conv.id, principal=SYSTEM).messages) >= 3
            else None
        ),
        timeout=SLOW_MS / 1000,
        interval=0.5,
        message="the voice turn to be stored",
    )
    page.screenshot(path="/tmp/studio-voice-chat.png", full_page=True)
    assert [m.role for m in messages][:3] == ["assistant", "user", "assistant"]
    assert "name" in messages[1].content.lower() and messages[2].content.strip()
