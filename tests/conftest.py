"""Fixtures that start real things: the database, the bundled model, the app server.

The bundled model is converted and loaded once per test session and shared; every test that
stores data gets its own temporary data directory.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from agents.llm.pool import LLMPool
from container import Services, build_services
from core.settings import Settings
from tests.pg_cluster import PostgresMissing, fresh_database, throwaway_postgres

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
def services(settings: Settings, llm_pool: LLMPool) -> Iterator[Services]:
    svc = build_services(settings, llm=llm_pool)
    yield svc
    svc.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    from app import create_app

    with TestClient(create_app(services=services)) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server(services: Services) -> Iterator[str]:
    """The real app on a real port (for the openai client and the browser)."""
    from app import create_app

    port = _free_port()
    config = uvicorn.Config(
        create_app(services=services), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


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
