"""Knowledge tests run twice: on the embedded Chroma and on a real ``chroma run`` server.

The embedder and the server are shared by the session (``tests/conftest.py``); every test gets
its own data directory and its own collection prefix, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agents.llm.pool import LLMPool
from container import Services, build_services
from core.settings import Settings
from tests.conftest import TEST_CLIENT_HOST


@pytest.fixture(params=["embedded", "server"])
def chroma_mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def knowledge_settings(
    tmp_path: Path, model_cache_dir: Path, chroma_mode: str, request: pytest.FixtureRequest
) -> Settings:
    url = request.getfixturevalue("chroma_server") if chroma_mode == "server" else None
    return Settings(
        data_dir=tmp_path / "data",
        model_cache_dir=model_cache_dir,
        llm_preload=False,
        knowledge_chroma_url=url,
        knowledge_collection_prefix=f"t{uuid.uuid4().hex[:10]}",
        jobs_poll_interval_s=0.05,
        allowed_hosts=TEST_CLIENT_HOST,
    )


@pytest.fixture
def kservices(knowledge_settings: Settings, llm_pool: LLMPool, embedder: Any) -> Iterator[Services]:
    svc = build_services(knowledge_settings, llm=llm_pool, embedder=embedder)
    yield svc
    svc.close()


@pytest.fixture
def kclient(kservices: Services) -> Iterator[TestClient]:
    from app import create_app

    with TestClient(create_app(services=kservices)) as test_client:
        yield test_client
