"""Who may change what, checked by the knowledge service itself (the studio calls it directly).

And the import direction that keeps the packages apart: ``knowledge`` implements the chat's
``Grounder`` without importing ``agents.service``, so the two never import each other.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from container import Services
from core.errors import AuthError, NotOwnerError
from core.principal import ANONYMOUS, SYSTEM, Principal
from knowledge.service import KnowledgeService

ALICE = Principal(address="0x" + "a1" * 20, via="session")
BOB = Principal(address="0x" + "b2" * 20, via="session")


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_a_base_for_an_agent_is_made_only_by_the_agents_owner(kservices: Services) -> None:
    knowledge = kservices.knowledge
    agent = kservices.agents.create_agent({"name": "Keeper"}, owner=ALICE.address, principal=SYSTEM)
    with pytest.raises(NotOwnerError):
        knowledge.create_base_for_agent(agent.id, "Bob's notes", principal=BOB)
    with pytest.raises(AuthError):
        knowledge.create_base_for_agent(agent.id, "Anyone's notes", principal=ANONYMOUS)
    assert knowledge.list_bases() == []  # refused before the base existed

    made = knowledge.create_base_for_agent(agent.id, "Alice's notes", principal=ALICE)
    assert made.owner_address == ALICE.address
    assert made.agent_ids == [agent.id]
    assert [b.id for b in knowledge.bases_for_agent(agent.id)] == [made.id]


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_only_the_bases_owner_changes_it(kservices: Services) -> None:
    knowledge = kservices.knowledge
    kb = knowledge.create_base("Alice's notes", principal=ALICE)
    with pytest.raises(NotOwnerError):
        knowledge.add_document(kb.id, "notes.txt", b"The harbour opens at dawn.", principal=BOB)
    with pytest.raises(NotOwnerError):
        knowledge.delete_base(kb.id, principal=BOB)
    with pytest.raises(NotOwnerError):
        knowledge.reindex_base(kb.id, principal=BOB)
    assert knowledge.list_documents(kb.id) == []
    knowledge.delete_base(kb.id, principal=ALICE)
    assert knowledge.list_bases() == []


def test_changes_need_the_caller_named() -> None:
    """``principal`` is keyword-only and has no default: a call that forgets it fails loudly
    instead of acting as an anonymous caller."""
    changing = [
        "create_base",
        "create_base_for_agent",
        "delete_base",
        "attach",
        "detach",
        "add_document",
        "delete_document",
        "reindex_base",
    ]
    for name in changing:
        param = inspect.signature(getattr(KnowledgeService, name)).parameters["principal"]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert param.default is inspect.Parameter.empty, name


def test_knowledge_does_not_import_the_agent_service() -> None:
    root = Path(__file__).resolve().parents[2]
    probe = (
        "import sys, knowledge.service, knowledge.jobs; "
        "print(sorted(m for m in sys.modules if m.startswith('agents')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['agents', 'agents.grounding']"
