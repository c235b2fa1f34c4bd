"""Conversations with an agent: persisted chats, streamed replies, regenerate.

A reply is a ``ReplyStream``: iterate it for text deltas (the API turns them into SSE, the UI
into a growing chat bubble); when iteration ends, normally or because the client went away,
whatever was generated is stored. The user's message is stored before generation starts, so
nothing the user typed is lost if the model fails.

Order is the order of sends (positions and history are stored by ``agents.conversations``).
A send takes two positions at once: its own and its reply's, so a reply lands right after the
message it answers even when other messages arrive while it streams. A conversation deleted
while its reply streams ends that reply with a 409 (an ``error`` frame when streaming); the
reply is not stored.

Grounding (knowledge bases): when the agent uses knowledge bases, the newest user
message is the query; the chunks found go into the prompt with numbered markers, the reply
carries them as ``sources``, and a stored reply keeps its retrieval trace. All of it sits in
``_ground`` and ``_stream``; everything else here is unaware of knowledge.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agents.conversations import (
    DELETED_MID_REPLY,
    ConversationView,
    MessageView,
    add_version,
    conversation_row,
    conversation_view,
    insert_reply,
    message_view,
    new_message,
    recent_history,
    take_positions,
    touch,
)
from agents.grounding import Grounder, Grounding, Source
from agents.llm.base import LLMBackend, StreamResult
from agents.llm.pool import LLMPool
from agents.lorebook import scan_depth_needed
from agents.memory import MemoryService
from agents.personas import PersonaView
from agents.prompt import build_prompt, greetings
from agents.prompt_parts import ChatExtras
from agents.records import ConversationRecord, MessageRecord
from agents.schema import ChatMessage, GenerationSettings
from agents.service import AgentService, AgentView, merge_generation
from core.db import Database
from core.errors import AnimaError, ConflictError, ValidationError
from core.principal import Principal

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 32_000


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    finish_reason: str = "stop"


class ReplyStream:
    """Text deltas of one reply; ``message`` and ``usage`` are set once iteration ends."""

    def __init__(
        self,
        deltas: Iterator[str],
        result: StreamResult,
        on_done: Callable[[str], MessageView | None],
    ) -> None:
        self._deltas = deltas
        self._result = result
        self._on_done = on_done
        self.message: MessageView | None = None
        self.usage = Usage()
        self.text = ""
        self.sources: list[Source] = []  # the knowledge this reply was grounded on

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []
        finished = False
        try:
            for delta in self._deltas:
                parts.append(delta)
                yield delta
            finished = True
        finally:
            # Closing the backend's stream stops generation and frees the model at once.
            close = getattr(self._deltas, "close", None)
            if close is not None:
                close()
            self._finish(parts, finished)

    async def __aiter__(self) -> AsyncIterator[str]:
        """The same deltas for async callers (the API): waiting for the model holds no
        thread, and a cancelled task (a client disconnect) cancels the request."""
        parts: list[str] = []
        finished = False
        try:
            if hasattr(self._deltas, "__anext__"):
                async for delta in self._deltas:  # type: ignore[attr-defined]
                    parts.append(delta)
                    yield delta
            else:  # a plain iterator: step it in a worker thread
                step = anyio.to_thread.run_sync
                while (delta := await step(next, self._deltas, None)) is not None:
                    parts.append(delta)
                    yield delta
            finished = True
        finally:
            close = getattr(self._deltas, "close", None)
            if close is not None:
                close()
            with anyio.CancelScope(shield=True):  # store what arrived, even when cancelled
                await anyio.to_thread.run_sync(self._finish, parts, finished)

    def _finish(self, parts: list[str], finished: bool) -> None:
        self.text = "".join(parts)
        r = self._result
        self.usage = Usage(
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            total_tokens=r.prompt_tokens + r.completion_tokens,
            finish_reason=r.finish_reason,
        )
        if self.text.strip():
            try:
                self.message = self._on_done(self.text)
            except AnimaError as exc:
                if finished:
                    raise  # the reader is still there: tell it (409, an SSE error frame)
                # The model failed or the reader left: that is what they will see.
                log.warning("reply not stored: %s", exc.message)

    def collect(self) -> str:
        """Run the whole reply and return its text."""
        for _ in self:
            pass
        return self.text

    async def acollect(self) -> str:
        """``collect`` for async callers."""
        async for _ in self:
            pass
        return self.text


class ChatService:
    """Starting a chat and reading one are open to everyone. Sending, regenerating and
    deleting take the caller (``principal``): conversations have no owner yet, so nothing is
    refused today, but every caller already says who it acts for."""

    def __init__(
        self,
        db: Database,
        agents: AgentService,
        llm: LLMPool,
        knowledge: Grounder | None = None,
        memory: MemoryService | None = None,
    ) -> None:
        self.db = db
        self.agents = agents
        self.llm = llm
        self.knowledge = knowledge
        self.memory = memory  # persona, author's note, summary and pins in the prompt

    # ----- conversations -------------------------------------------------------------
    def create_conversation(
        self,
        agent_id: str,
        user_name: str = "User",
        greeting: int = 0,
        persona: PersonaView | None = None,
    ) -> ConversationView:
        """A new chat that opens with the agent's greeting (the others become swipes).
        With a ``persona`` (``PersonaService.for_new_chat``), ``{{user}}`` is its name."""
        card = self.agents.get_card(agent_id)
        user_name = (user_name or "User").strip()[:100] or "User"
        options = greetings(card.data, persona.name if persona else user_name)
        conv = ConversationRecord(
            id=uuid.uuid4().hex,
            agent_id=agent_id,
            user_name=user_name,
            next_position=1 if options else 0,
            persona_id=persona.id if persona else None,
        )
        with self.db.session() as s:
            s.add(conv)
            if options:
                # Every greeting is a version of the first message (swipes), in card order.
                s.add(new_message(conv.id, 0, "assistant", options, greeting % len(options)))
        return self.get_conversation(conv.id)

    def list_conversations(self, agent_id: str) -> list[ConversationView]:
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(ConversationRecord)
                .where(ConversationRecord.agent_id == agent_id)
                .order_by(ConversationRecord.updated_at.desc())
            ).all()
            return [conversation_view(r, with_messages=False) for r in rows]

    def get_conversation(self, conversation_id: str) -> ConversationView:
        with self.db.session() as s:
            return conversation_view(conversation_row(s, conversation_id), with_messages=True)

    def delete_conversation(self, conversation_id: str, *, principal: Principal) -> None:
        with self.db.session() as s:
            s.delete(conversation_row(s, conversation_id))

    # ----- replies -------------------------------------------------------------------
    def send(
        self,
        conversation_id: str,
        content: str,
        generation: dict[str, Any] | None = None,
        *,
        principal: Principal,
    ) -> ReplyStream:
        """Store the user's message, then stream the agent's reply to it."""
        content = _check_text(content)
        with self.db.session() as s:
            conv = conversation_row(s, conversation_id)
            # Two slots at once: this message and, right after it, the reply to it.
            position = take_positions(s, conv.id, 2)
            s.add(new_message(conv.id, position, "user", [content]))
            if not conv.title:
                conv.title = content[:60]
            agent_id = conv.agent_id
        return self._reply(conversation_id, agent_id, generation, slot=position + 1)

    def regenerate(
        self,
        conversation_id: str,
        generation: dict[str, Any] | None = None,
        *,
        principal: Principal,
    ) -> ReplyStream:
        """A new version of the last reply, shown; the earlier ones stay as its versions."""
        with self.db.session() as s:
            conv = conversation_row(s, conversation_id)
            last_two = s.scalars(
                select(MessageRecord)
                .where(MessageRecord.conversation_id == conv.id)
                .order_by(MessageRecord.position.desc())
                .limit(2)
            ).all()
            if len(last_two) < 2 or last_two[0].role != "assistant":
                raise ValidationError("nothing to regenerate: the last message is not a reply")
            agent_id, target = conv.agent_id, last_two[0]
            target_id, target_position = target.id, target.position
        return self._reply(
            conversation_id, agent_id, generation, replace=(target_id, target_position)
        )

    def complete(
        self,
        agent_id: str,
        messages: list[ChatMessage],
        generation: dict[str, Any] | None = None,
        user_name: str = "User",
    ) -> ReplyStream:
        """A stateless reply to a client-held history (the OpenAI-compatible path)."""
        for number, message in enumerate(messages, start=1):
            if len(message.content) > MAX_MESSAGE_CHARS:
                raise ValidationError(
                    f"message {number} is longer than {MAX_MESSAGE_CHARS} characters"
                )
        agent, card = self.agents.get_with_card(agent_id)
        extra = "\n\n".join(m.content for m in messages if m.role == "system").strip() or None
        history = [m for m in messages if m.role != "system"]
        if not history or history[-1].role != "user":
            raise ValidationError("messages must end with a user message")
        params = self._params(agent, generation)
        backend = self.llm.get(agent.model, agent.adapter)
        grounding = self._ground(agent_id, history)
        return self._stream(
            backend, card.data, history, params, user_name, extra, lambda _: None, grounding
        )

    # ----- internals -----------------------------------------------------------------
    def _reply(
        self,
        conversation_id: str,
        agent_id: str,
        generation: dict[str, Any] | None,
        *,
        slot: int | None = None,
        replace: tuple[str, int] | None = None,
    ) -> ReplyStream:
        """The reply stored at the reserved ``slot``, or replacing message ``replace``."""
        agent, card = self.agents.get_with_card(agent_id)
        params = self._params(agent, generation)
        backend = self.llm.get(agent.model, agent.adapter)
        count = functools.lru_cache(maxsize=4096)(backend.count_tokens)
        before = replace[1] if replace is not None else slot
        user_name, history = recent_history(
            self.db,
            conversation_id,
            before,
            budget=backend.context_window,
            count=count,
            at_least=scan_depth_needed(card.data.character_book),
        )
        extras = None
        if self.memory is not None:
            user_name, history, extras = self.memory.prompt_context(
                conversation_id, before, user_name, history
            )
        target = replace[0] if replace is not None else None

        def save(text: str) -> MessageView:
            try:
                with self.db.session() as s:
                    if target is not None:
                        row = s.get(MessageRecord, target)
                        if row is not None:
                            add_version(row, text)
                            s.flush()
                            return message_view(row)
                        # Deleted meanwhile: store it as a new reply at the end.
                        position = take_positions(s, conversation_id, 1)
                    else:
                        assert slot is not None
                        position = slot
                        touch(s, conversation_id)
                    return insert_reply(s, conversation_id, position, text)
            except IntegrityError as exc:  # the conversation went away between the checks
                raise ConflictError(DELETED_MID_REPLY) from exc

        grounding = self._ground(agent_id, history)
        return self._stream(
            backend,
            card.data,
            history,
            params,
            user_name,
            None,
            _then_check_memory(save, self.memory, conversation_id),
            grounding,
            count_tokens=count,
            extras=extras,
        )

    def _stream(
        self,
        backend: LLMBackend,
        card: Any,
        history: list[ChatMessage],
        params: GenerationSettings,
        user_name: str,
        extra_system: str | None,
        save: Callable[[str], MessageView | None],
        grounding: Grounding | None = None,
        count_tokens: Callable[[str], int] | None = None,
        extras: ChatExtras | None = None,
    ) -> ReplyStream:
        build = build_prompt(
            card,
            history,
            user_name=user_name,
            count_tokens=count_tokens or backend.count_tokens,
            context_window=backend.context_window,
            max_new_tokens=params.max_new_tokens,
            extra_system=extra_system,
            knowledge=grounding.prompt_blocks() if grounding else (),
            extras=extras,
        )
        # Anima's own stop first: a backend that can send only a few (OpenAI's API takes
        # four) must never drop the one that keeps the model from speaking for the user.
        stop = list(dict.fromkeys([f"\n{user_name}:", *params.stop]))
        params = params.model_copy(update={"stop": stop})
        result = StreamResult()
        if grounding is not None and self.knowledge is not None:
            save = _saving_trace(save, self.knowledge, grounding, build.knowledge_used)
        reply = ReplyStream(backend.stream(build.messages, params, result), result, save)
        if grounding is not None:
            reply.sources = grounding.sources(build.knowledge_used)
        return reply

    def _ground(self, agent_id: str, history: list[ChatMessage]) -> Grounding | None:
        """Retrieve from the agent's knowledge bases for the newest user message."""
        if self.knowledge is None:
            return None
        query = next((m.content for m in reversed(history) if m.role == "user"), "")
        return self.knowledge.ground(agent_id, query)

    def _params(self, agent: AgentView, overrides: dict[str, Any] | None) -> GenerationSettings:
        if not overrides:
            return agent.generation
        return merge_generation(agent.generation.model_dump(), overrides)


def _saving_trace(
    save: Callable[[str], MessageView | None],
    knowledge: Grounder,
    grounding: Grounding,
    used: int,
) -> Callable[[str], MessageView | None]:
    """``save`` that also stores the reply's retrieval trace (the chunks its prompt held)."""

    def save_with_trace(text: str) -> MessageView | None:
        view = save(text)
        if view is not None:
            knowledge.record_trace(view.id, grounding, used)
        return view

    return save_with_trace


def _then_check_memory(
    save: Callable[[str], MessageView | None], memory: MemoryService | None, conversation_id: str
) -> Callable[[str], MessageView | None]:
    """``save``, then a check whether the chat needs a summary (queued as a job, never
    written here: the reply is already complete when this runs)."""
    if memory is None:
        return save

    def save_then_check(text: str) -> MessageView | None:
        view = save(text)
        memory.after_reply(conversation_id)
        return view

    return save_then_check


def _check_text(content: str) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("message is empty")
    if len(content) > MAX_MESSAGE_CHARS:
        raise ValidationError(f"message is longer than {MAX_MESSAGE_CHARS} characters")
    return content


__all__ = [
    "ChatService",
    "ConversationView",
    "MessageView",
    "ReplyStream",
    "Usage",
]
