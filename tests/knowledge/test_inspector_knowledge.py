"""The prompt inspector over a real knowledge base (embedded Chroma, the bundled embedder and
model): the excerpt retrieval found is a part of the prompt, with its document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from container import Services
from tests.knowledge.test_grounded_chat import QUESTION, _grounded_agent

pytestmark = pytest.mark.model


@pytest.fixture
def chroma_mode() -> str:
    """One store is enough here: the preview reads what retrieval returns, whichever store."""
    return "embedded"


def test_the_preview_shows_the_knowledge_chunk_and_its_source(
    kclient: TestClient, kservices: Services
) -> None:
    agent_id, _kb, _doc = _grounded_agent(kclient, kservices)
    answer = kclient.post(f"/api/agents/{agent_id}/prompt-preview", json={"message": QUESTION})
    assert answer.status_code == 200, answer.text
    view = answer.json()

    used = view["knowledge_used"]
    assert used and used[0]["marker"] == 1 and used[0]["document"] == "lighthouse.txt"
    assert "Mara Quell" in used[0]["text"]
    part = next(p for p in view["parts"] if p["kind"] == "knowledge")
    assert "[1] (lighthouse.txt) " in part["text"] and part["tokens"] > 0
    assert part["text"] in view["messages"][0]["content"]
    assert part["text"] in view["rendered"]
