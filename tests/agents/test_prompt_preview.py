"""The prompt inspector: parts, fired lorebook keys, what the budget left out, drafts, and the
proof that the preview is the prompt a real reply sends (a backend that records its prompt).
The test chat on a draft streams through the scheduler and stores nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from agents.llm.base import StreamResult
from agents.llm.pool import LLMPool
from agents.records import ConversationRecord, MessageRecord
from agents.schema import ChatMessage, GenerationSettings
from container import Services, build_services
from core.errors import NotFoundError, NotOwnerError, ValidationError
from core.principal import SYSTEM, Principal
from knowledge.schema import Grounding as KnowledgeGrounding
from knowledge.schema import SearchHit
from tests.chain.helpers import fast_settings
from tests.fake_backends import ScriptedBackend

OWNER = Principal(address="0x" + "a1" * 20, via="session")
STRANGER = Principal(address="0x" + "b2" * 20, via="session")


class _Recorder(ScriptedBackend):
    """Answers "Hello." and keeps every prompt it was sent; renders ChatML as a template would."""

    model_name = "recorder"

    def __init__(self) -> None:
        self.prompts: list[list[ChatMessage]] = []

    def render_chat(self, messages: list[ChatMessage]) -> str:
        turns = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
        return "".join(turns) + "<|im_start|>assistant\n"

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        yield "Hello."


@pytest.fixture
def recorder() -> _Recorder:
    return _Recorder()


@pytest.fixture
def svc(tmp_path: Path, recorder: _Recorder) -> Iterator[Services]:
    settings = fast_settings(tmp_path / "data", chain_mint_on_create=False)
    services = build_services(settings, llm=LLMPool(settings, default=recorder))
    yield services
    services.close()


def _entry(keys: list[str], content: str, **extra: Any) -> dict[str, Any]:
    return {"keys": keys, "content": content, "enabled": True, "insertion_order": 0, **extra}


def _agent(svc: Services, **fields: Any) -> str:
    card = {
        "name": "Mira",
        "description": "{{char}} keeps the lighthouse on the cliff.",
        "personality": "calm, dry humour",
        "scenario": "A stormy night.",
        "first_mes": "Evening, {{user}}.",
        "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Mind the stairs.",
        "system_prompt": "You are {{char}}.",
        "post_history_instructions": "Stay in character.",
        "character_book": {
            "entries": [
                _entry(["lamp", "beacon"], "The lamp is a Fresnel lens from 1890.", name="Lamp"),
                _entry(["harbour"], "The harbour froze last winter."),
            ]
        },
        "generation": {"max_new_tokens": 16},
        **fields,
    }
    return svc.agents.create_agent(card, principal=OWNER, owner=OWNER.address).id


def test_the_preview_shows_every_part_and_the_key_that_fired(svc: Services) -> None:
    agent_id = _agent(svc)
    view = svc.inspector.preview(agent_id, "Tell me about the beacon.", principal=STRANGER)

    kinds = [p.kind for p in view.parts]
    for kind in ("system", "lore", "description", "personality", "scenario", "example"):
        assert kind in kinds, kinds
    assert kinds[-3:] == ["greeting", "message", "post_history"]
    lore = [p for p in view.parts if p.kind == "lore"]
    assert [(p.label, p.key) for p in lore] == [("Lorebook: Lamp", "beacon")]
    assert [(e.name, e.key) for e in view.lore_fired] == [("Lamp", "beacon")]
    assert view.lore_left_out == []
    # The system parts are the system message, and each part is priced by the tokenizer.
    system = [p.text for p in view.parts if p.message == 0]
    assert "\n\n".join(system) == view.messages[0].content
    description = next(p for p in view.parts if p.kind == "description")
    assert description.text == "Mira keeps the lighthouse on the cliff."
    assert description.tokens == len(description.text.split())
    assert view.rendered is not None and view.rendered.startswith("<|im_start|>system\nYou are")
    assert view.prompt_tokens == len(view.rendered.split())
    assert view.context_window == 2048 and view.max_new_tokens == 16


def test_entries_past_the_lorebook_budget_are_reported_left_out(svc: Services) -> None:
    book = {
        "token_budget": 6,
        "entries": [
            _entry(["storm"], "Storms come from the west.", insertion_order=2, name="Storm"),
            _entry(["storm"], "The storm of 1911 took the old keeper and his dog.", name="1911"),
        ],
    }
    agent_id = _agent(svc, character_book=book)
    view = svc.inspector.preview(agent_id, "Is a storm coming?", principal=SYSTEM)

    assert [(e.name, e.key) for e in view.lore_fired] == [("Storm", "storm")]
    assert [(e.name, e.key) for e in view.lore_left_out] == [("1911", "storm")]
    assert "1911" not in view.messages[0].content


def test_a_draft_overrides_the_card_for_its_owner_only(svc: Services) -> None:
    agent_id = _agent(svc)
    draft = {"description": "{{char}} is a retired sailor."}
    view = svc.inspector.preview(agent_id, "Hi", draft=draft, principal=OWNER)
    assert "Mira is a retired sailor." in view.messages[0].content
    assert svc.agents.get_card(agent_id).data.description.startswith("{{char}} keeps")
    with pytest.raises(NotOwnerError):
        svc.inspector.preview(agent_id, "Hi", draft=draft, principal=STRANGER)
    with pytest.raises(ValidationError, match="not card fields: colour"):
        svc.inspector.preview(agent_id, "Hi", draft={"colour": "red"}, principal=OWNER)
    with pytest.raises(ValidationError, match="empty"):
        svc.inspector.preview(agent_id, "   ", principal=OWNER)


def test_the_preview_is_the_prompt_the_next_reply_sends(svc: Services, recorder: _Recorder) -> None:
    """In a conversation with history, a pin, an author's note and a summary: the preview for
    a message equals what the backend receives when that message is sent."""
    agent_id = _agent(svc)
    conv = svc.chat.create_conversation(agent_id, principal=OWNER)
    for text in ("Where is the lamp?", "And the harbour?"):
        "".join(svc.chat.send(conv.id, text, principal=OWNER))
    first = svc.chat.get_conversation(conv.id, principal=OWNER).messages[1]
    svc.memory.pin(conv.id, first.id, True, principal=OWNER)
    from agents.memory import ChatSettings

    settings = ChatSettings(authors_note="Keep it short.", authors_note_depth=1)
    svc.memory.update_settings(conv.id, settings, principal=OWNER)

    view = svc.inspector.preview(
        agent_id, "Tell me of the beacon.", conversation_id=conv.id, principal=OWNER
    )
    "".join(svc.chat.send(conv.id, "Tell me of the beacon.", principal=OWNER))

    sent = recorder.prompts[-1]
    assert view.messages == sent
    assert view.rendered == recorder.render_chat(sent)
    kinds = [p.kind for p in view.parts if p.message > 0]
    assert kinds[-3:] == ["authors_note", "message", "post_history"]
    assert [p.text for p in view.parts if p.pinned] == ["Where is the lamp?"]
    # The book scans the newest 4 messages: "lamp" is older, so "beacon" fired the Lamp.
    assert [(e.name, e.key) for e in view.lore_fired] == [
        ("Lamp", "beacon"),
        ("harbour", "harbour"),
    ]
    # Someone else's conversation is not theirs to preview.
    with pytest.raises(NotFoundError):
        svc.inspector.preview(agent_id, "Hi", conversation_id=conv.id, principal=STRANGER)


def test_a_conversation_with_another_agent_is_refused(svc: Services) -> None:
    mine, other = _agent(svc), _agent(svc, name="Other")
    conv = svc.chat.create_conversation(other, principal=OWNER)
    with pytest.raises(ValidationError, match="not a one-to-one chat with this agent"):
        svc.inspector.preview(mine, "Hi", conversation_id=conv.id, principal=OWNER)


class _Found:
    """What retrieval found: the knowledge package's own grounding type, three passages."""

    @staticmethod
    def grounding() -> KnowledgeGrounding:
        hits = [
            SearchHit(
                chunk_id=f"c{n}",
                document_id="d1",
                document="keeper-log.pdf",
                page=n,
                position=n,
                kb_id="kb1",
                text=text,
                score=1.0 / n,
                similarity=1.0 / n,
                dense_rank=n,
                keyword_rank=None,
            )
            for n, text in enumerate(
                ["The lamp was lit at dusk every day.", "x " * 400, "Oil came by boat."], start=1
            )
        ]
        return KnowledgeGrounding(query="lamp", mode="hybrid", kb_ids=["kb1"], hits=hits)


class _Grounder:
    def ground(self, agent_id: str, query: str) -> KnowledgeGrounding:
        return _Found.grounding()

    def record_trace(self, message_id: str, grounding: Any, used: int | None = None) -> None:
        raise AssertionError("a preview or a test chat stores no retrieval trace")


def test_knowledge_chunks_used_and_left_out(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svc.chat, "knowledge", _Grounder())
    monkeypatch.setattr(svc.llm.get().backend, "context_window", 700, raising=False)
    agent_id = _agent(svc)
    view = svc.inspector.preview(agent_id, "When was the lamp lit?", principal=OWNER)

    assert [(k.marker, k.document, k.page) for k in view.knowledge_used] == [
        (1, "keeper-log.pdf", 1)
    ]
    assert [k.marker for k in view.knowledge_left_out] == [2, 3]
    part = next(p for p in view.parts if p.kind == "knowledge")
    assert "[1] (keeper-log.pdf, page 1) The lamp was lit at dusk" in part.text
    assert "[2]" not in view.messages[0].content


def test_test_chat_streams_the_draft_and_stores_nothing(svc: Services, recorder: _Recorder) -> None:
    agent_id = _agent(svc)

    def stored() -> tuple[int, int]:
        with svc.db.session() as s:
            convs = s.scalar(select(func.count()).select_from(ConversationRecord))
            messages = s.scalar(select(func.count()).select_from(MessageRecord))
        return int(convs or 0), int(messages or 0)

    before = stored()
    draft = {"description": "{{char}} is a retired sailor."}
    reply = svc.inspector.test_chat(agent_id, [], "Hello there", draft=draft, principal=OWNER)
    assert "".join(reply) == "Hello."
    history = [
        ChatMessage(role="assistant", content="Evening, User."),
        ChatMessage(role="user", content="Hello there"),
        ChatMessage(role="assistant", content="Hello."),
    ]
    second = svc.inspector.test_chat(agent_id, history, "Again", draft=draft, principal=OWNER)
    assert "".join(second) == "Hello."

    sent = recorder.prompts[-1]
    assert "Mira is a retired sailor." in sent[0].content
    assert [m.content for m in sent[1:-1]] == [*(m.content for m in history), "Again"]
    assert stored() == before
    assert svc.chat.list_conversations(agent_id, principal=OWNER) == []
    with pytest.raises(NotOwnerError):
        svc.inspector.test_chat(agent_id, [], "Hi", draft=draft, principal=STRANGER)


@pytest.mark.model
def test_the_preview_is_what_the_bundled_model_reads(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SmolLM2 itself: the rendered preview is the chat template over the very messages
    the model's backend received, and its token count is the prompt the engine read."""
    agent_id = services.agents.create_agent(
        {
            "name": "Mira",
            "description": "{{char}} keeps the lighthouse.",
            "first_mes": "Evening.",
            "character_book": {"entries": [_entry(["lamp"], "The lamp is old.")]},
            "generation": {"max_new_tokens": 4, "temperature": 0.0},
        },
        principal=SYSTEM,
    ).id
    view = services.inspector.preview(agent_id, "Is the lamp lit?", principal=SYSTEM)
    assert [e.key for e in view.lore_fired] == ["lamp"]

    backend = services.llm.get().backend
    received: list[list[ChatMessage]] = []
    results: list[StreamResult] = []
    real_stream = backend.stream

    def recording(messages: Any, params: Any, result: Any = None) -> Any:
        received.append(list(messages))
        results.append(result)
        return real_stream(messages, params, result)

    monkeypatch.setattr(backend, "stream", recording)
    reply = services.inspector.test_chat(agent_id, [], "Is the lamp lit?", principal=SYSTEM)
    "".join(reply)

    assert received and received[-1] == view.messages
    assert view.rendered == backend.render_chat(received[-1])
    assert "<|im_start|>system" in view.rendered
    assert view.prompt_tokens == results[-1].prompt_tokens
    assert view.context_window == backend.context_window


@pytest.mark.model
def test_the_transformers_backend_renders_what_it_tokenizes(llm_pool: LLMPool) -> None:
    """Where the engine falls back to transformers, its rendered prompt is the token ids it
    generates from, too."""
    from agents.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend(llm_pool.settings)
    messages = [
        ChatMessage(role="system", content="You are Mira."),
        ChatMessage(role="assistant", content="Evening."),
        ChatMessage(role="user", content="Is the lamp lit?"),
    ]
    rendered = backend.render_chat(messages)
    ids = backend._encode_prompt(messages)["input_ids"][0].tolist()
    assert backend._tokenizer.encode(rendered, add_special_tokens=False) == ids
    assert rendered.endswith("<|im_start|>assistant\n")


def test_test_chat_waits_in_the_callers_lane_of_the_scheduler(tmp_path: Path) -> None:
    from agents.llm.scheduler import Lane, Scheduler, Ticket, tenant_of

    class Recording(Scheduler):
        def __init__(self) -> None:
            super().__init__()
            self.tenants: list[str] = []

        def submit(self, lane: Lane, work: Any, tenant: str | None = None) -> Ticket:
            ticket = super().submit(lane, work, tenant)
            self.tenants.append(ticket.tenant)
            return ticket

    scheduler = Recording()
    settings = fast_settings(tmp_path / "data", chain_mint_on_create=False)
    pool = LLMPool(settings, default=_Recorder(), scheduler=scheduler)
    svc = build_services(settings, llm=pool)
    try:
        agent_id = _agent(svc)
        assert "".join(svc.inspector.test_chat(agent_id, [], "Hi", principal=OWNER)) == "Hello."
        assert scheduler.tenants == [tenant_of(OWNER)]
    finally:
        svc.close()
