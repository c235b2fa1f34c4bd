"""Fixtures that start real things: the database, the bundled model, the app server, the
browser.

The bundled model and Chromium start once per test session and are shared; every test that
stores data gets its own temporary data directory, every browser test its own browser context.
An app on a real port always comes from ``tests.servers.serve_app``; waiting for something to
happen always goes through ``tests.waiting.wait_until``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright

from agents.llm.pool import LLMPool
from chain.anvil_chain import AnvilChain
from container import Services, build_services
from core.settings import Settings
from tests.pg_cluster import PostgresMissing, fresh_database, throwaway_postgres
from tests.servers import free_port, serve_app
from tests.waiting import wait_until
from voice.pool import VoicePool

# Starlette's TestClient sends ``Host: testserver``; the app's Host allow-list must know it.
TEST_CLIENT_HOST = "testserver"


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def llm_pool(model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LLMPool:
    """The real bundled model, loaded on first use and shared by every test."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("pool-data"),
        model_cache_dir=model_cache_dir,
        llm_preload=False,
    )
    return LLMPool(settings)


@pytest.fixture
def settings(tmp_path: Path, model_cache_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        model_cache_dir=model_cache_dir,
        llm_preload=False,
        allowed_hosts=TEST_CLIENT_HOST,
    )


@pytest.fixture
def services(settings: Settings, llm_pool: LLMPool, voice_pool: VoicePool) -> Iterator[Services]:
    svc = build_services(settings, llm=llm_pool, voice_pool=voice_pool)
    yield svc
    svc.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    from app import create_app

    with TestClient(create_app(services=services)) as test_client:
        yield test_client


@pytest.fixture
def live_server(services: Services) -> Iterator[str]:
    """The real app on a real port (for the openai client and the browser)."""
    from app import create_app

    with serve_app(create_app(services=services)) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (``tests/pg_cluster.py``) shared by the whole session;
    ``postgres_database`` gives a test a database of its own on it."""
    try:
        cluster = throwaway_postgres()
        url = cluster.__enter__()
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    try:
        yield url
    finally:
        cluster.__exit__(None, None, None)


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's cluster, dropped after the test."""
    with fresh_database(postgres_url) as url:
        yield url


# ----- Knowledge bases ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def embedder() -> Any:
    """The bundled all-MiniLM-L6-v2, loaded once and shared by every knowledge test."""
    from knowledge.sentence_transformer_embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("bundled:all-minilm-l6-v2")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``chroma run`` server on 127.0.0.1 (a free port), shared by the session."""
    import subprocess
    import sys

    import httpx

    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    log = tmp_path_factory.mktemp("chroma-server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(chroma),
                "run",
                "--path",
                str(log.parent / "db"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, timeout=60, interval=0.1, message="chroma run to answer")
    except BaseException:
        proc.kill()
        raise
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----- On-chain identity: one real anvil node for the whole session ------------------------
@pytest.fixture(scope="session")
def anvil_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilChain]:
    """A real anvil (npm @foundry-rs/anvil) on a free 127.0.0.1 port, stopped at the end.

    Tests that share it deploy their own contracts on it (a data dir each); tests that stop,
    kill or restart a node let their chain service start one of its own instead.
    """
    node = AnvilChain(state_file=tmp_path_factory.mktemp("anvil") / "anvil-state.json")
    node.start()
    yield node
    node.stop()


# ----- Voice -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def voice_pool(model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> VoicePool:
    """Speech engines (Piper, Whisper base, speaker encoder), loaded on first use and shared."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("voice-data"),
        model_cache_dir=model_cache_dir,
        llm_preload=False,
        tts_threads=2,
    )
    return VoicePool(settings)


@pytest.fixture(scope="session")
def reference_voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """About 15-20 s of speech from each of three festival voices (none is Piper's): voice
    samples for profile tests. Debian festival + festvox voices (bootstrap.sh --test)."""
    from tests.voice.speakers import festival_samples

    return festival_samples(tmp_path_factory.mktemp("reference-voices"))


# ----- Fine-tuning -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def finetune_world(
    model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """Agents with adapters really trained on the bundled model (``tests/agents/finetune_world``).

    Trained once per session: training is the slow part of the fine-tune tests.
    """
    from tests.agents.finetune_world import build_world

    world = build_world(tmp_path_factory.mktemp("finetune-data"), model_cache_dir)
    yield world
    world.services.close()


# ----- Browser: one headless Chromium for the session, a fresh context per test -------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone (and camera) that needs no permission prompt: the voice tests speak
    # into the page through the WAV file of ``fake_microphone``.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
UI_TIMEOUT_MS = 30_000
# Fixtures that serve the app a page talks to; ``page`` starts whichever a test uses first, so
# that the page closes first: a tab still connected to Gradio holds up the server's shutdown.
SERVER_FIXTURES = ("live_server", "world_server", "chain_server")


@pytest.fixture(scope="session")
def fake_microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The WAV file Chromium's fake microphone plays, in a loop. Chromium reads it when a page
    starts recording, so a test writes it before it records."""
    return tmp_path_factory.mktemp("microphone") / "microphone.wav"


@pytest.fixture(scope="session")
def browser(fake_microphone: Path) -> Iterator[Browser]:
    """Headless Chromium (the system's), launched once and shared by every browser test."""
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={fake_microphone}"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A tab in a fresh browser context (no cookies or storage from other tests), closed
    before the app server the test uses stops."""
    for name in SERVER_FIXTURES:
        if name in request.fixturenames:
            request.getfixturevalue(name)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    yield page
    context.close()


@pytest.fixture(autouse=True)
def _own_event_loop_beside_the_browser(request: pytest.FixtureRequest) -> Iterator[None]:
    """Playwright's sync API leaves its event loop marked as running in this thread between
    calls, for as long as the session's browser is open; a test that runs a loop of its own
    (``asyncio.run``) could not start it. Such a test sees no running loop while it runs."""
    if "browser" in request.fixturenames:
        yield
        return
    loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)
