"""Conversations with an agent: persisted chats, streamed replies, regenerate.

A reply is a ``ReplyStream``: iterate it for text deltas (the API turns them into SSE, the UI
into a growing chat bubble); when iteration ends, normally or because the client went away,
whatever was generated is stored. The user's message is stored before generation starts, so
nothing the user typed is lost if the model fails.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import anyio
from pydantic import BaseModel
from sqlalchemy import func, select

from agents.llm.base import LLMBackend, StreamResult
from agents.llm.pool import LLMPool
from agents.prompt import build_prompt, greetings
from agents.records import ConversationRecord, MessageRecord, utcnow
from agents.schema import ChatMessage, GenerationSettings
from agents.service import AgentService, AgentView, merge_generation
from core.db import Database
from core.errors import NotFoundError, ValidationError
from core.files import is_safe_id

MAX_MESSAGE_CHARS = 32_000


class MessageView(BaseModel):
    id: str
    position: int
    role: str
    content: str
    alternatives: list[str]
    created_at: datetime


class ConversationView(BaseModel):
    id: str
    agent_id: str
    title: str
    user_name: str
    created_at: datetime
    updated_at: datetime
    messages: list[MessageView] = []


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

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []
        try:
            for delta in self._deltas:
                parts.append(delta)
                yield delta
        finally:
            # Closing the backend's stream stops generation and frees the model at once.
            close = getattr(self._deltas, "close", None)
            if close is not None:
                close()
            self._finish(parts)

    async def __aiter__(self) -> AsyncIterator[str]:
        """The same deltas for async callers (the API): waiting for the model holds no
        thread, and a cancelled task (a client disconnect) cancels the request."""
        parts: list[str] = []
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
        finally:
            close = getattr(self._deltas, "close", None)
            if close is not None:
                close()
            with anyio.CancelScope(shield=True):  # store what arrived, even when cancelled
                await anyio.to_thread.run_sync(self._finish, parts)

    def _finish(self, parts: list[str]) -> None:
        self.text = "".join(parts)
        r = self._result
        self.usage = Usage(
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            total_tokens=r.prompt_tokens + r.completion_tokens,
            finish_reason=r.finish_reason,
        )
        if self.text.strip():
            self.message = self._on_done(self.text)

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
    def __init__(self, db: Database, agents: AgentService, llm: LLMPool) -> None:
        self.db = db
        self.agents = agents
        self.llm = llm

    # ----- conversations -------------------------------------------------------------
    def create_conversation(
        self, agent_id: str, user_name: str = "User", greeting: int = 0
    ) -> ConversationView:
        """A new chat that opens with the agent's greeting (the others become swipes)."""
        card = self.agents.get_card(agent_id)
        user_name = (user_name or "User").strip()[:100] or "User"
        options = greetings(card.data, user_name)
        conv = ConversationRecord(id=uuid.uuid4().hex, agent_id=agent_id, user_name=user_name)
        with self.db.session() as s:
            s.add(conv)
            if options:
                first = options[greeting % len(options)]
                others = [g for g in options if g != first]
                s.add(
                    MessageRecord(
                        id=uuid.uuid4().hex,
                        conversation_id=conv.id,
                        position=0,
                        role="assistant",
                        content=first,
                        alternatives=others,
                    )
                )
        return self.get_conversation(conv.id)

    def list_conversations(self, agent_id: str) -> list[ConversationView]:
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(ConversationRecord)
                .where(ConversationRecord.agent_id == agent_id)
                .order_by(ConversationRecord.updated_at.desc())
            ).all()
            return [self._conv_view(r, with_messages=False) for r in rows]

    def get_conversation(self, conversation_id: str) -> ConversationView:
        with self.db.session() as s:
            return self._conv_view(self._conv(s, conversation_id), with_messages=True)

    def delete_conversation(self, conversation_id: str) -> None:
        with self.db.session() as s:
            s.delete(self._conv(s, conversation_id))

    # ----- replies -------------------------------------------------------------------
    def send(
        self, conversation_id: str, content: str, generation: dict[str, Any] | None = None
    ) -> ReplyStream:
        """Store the user's message, then stream the agent's reply to it."""
        content = _check_text(content)
        with self.db.session() as s:
            conv = self._conv(s, conversation_id)
            position = self._next_position(s, conv.id)
            s.add(
                MessageRecord(
                    id=uuid.uuid4().hex,
                    conversation_id=conv.id,
                    position=position,
                    role="user",
                    content=content,
                    alternatives=[],
                )
            )
            if not conv.title:
                conv.title = content[:60]
            conv.updated_at = utcnow()
            agent_id = conv.agent_id
        return self._reply(conversation_id, agent_id, generation, replace_last=False)

    def regenerate(
        self, conversation_id: str, generation: dict[str, Any] | None = None
    ) -> ReplyStream:
        """A new version of the last reply; the old one is kept in ``alternatives``."""
        with self.db.session() as s:
            conv = self._conv(s, conversation_id)
            msgs = conv.messages
            if not msgs or msgs[-1].role != "assistant" or len(msgs) == 1:
                raise ValidationError("nothing to regenerate: the last message is not a reply")
            agent_id = conv.agent_id
        return self._reply(conversation_id, agent_id, generation, replace_last=True)

    def complete(
        self,
        agent_id: str,
        messages: list[ChatMessage],
        generation: dict[str, Any] | None = None,
        user_name: str = "User",
    ) -> ReplyStream:
        """A stateless reply to a client-held history (the OpenAI-compatible path)."""
        agent, card = self.agents.get_with_card(agent_id)
        extra = "\n\n".join(m.content for m in messages if m.role == "system").strip() or None
        history = [m for m in messages if m.role != "system"]
        if not history or history[-1].role != "user":
            raise ValidationError("messages must end with a user message")
        params = self._params(agent, generation)
        backend = self.llm.get(agent.model, agent.adapter)
        return self._stream(backend, card.data, history, params, user_name, extra, lambda _: None)

    # ----- internals -----------------------------------------------------------------
    def _reply(
        self,
        conversation_id: str,
        agent_id: str,
        generation: dict[str, Any] | None,
        *,
        replace_last: bool,
    ) -> ReplyStream:
        agent, card = self.agents.get_with_card(agent_id)
        params = self._params(agent, generation)
        conv = self.get_conversation(conversation_id)
        stored = conv.messages[:-1] if replace_last else conv.messages
        history = [ChatMessage(role=m.role, content=m.content) for m in stored]  # type: ignore[arg-type]
        target = conv.messages[-1].id if replace_last else None

        def save(text: str) -> MessageView:
            with self.db.session() as s:
                if target is not None:
                    row = s.get(MessageRecord, target)
                    if row is None:  # deleted meanwhile: store as a new reply
                        return self._append(s, conversation_id, text)
                    row.alternatives = [*row.alternatives, row.content]
                    row.content = text
                    s.flush()
                    return _msg_view(row)
                return self._append(s, conversation_id, text)

        backend = self.llm.get(agent.model, agent.adapter)
        return self._stream(backend, card.data, history, params, conv.user_name, None, save)

    def _stream(
        self,
        backend: LLMBackend,
        card: Any,
        history: list[ChatMessage],
        params: GenerationSettings,
        user_name: str,
        extra_system: str | None,
        save: Callable[[str], MessageView | None],
    ) -> ReplyStream:
        build = build_prompt(
            card,
            history,
            user_name=user_name,
            count_tokens=backend.count_tokens,
            context_window=backend.context_window,
            max_new_tokens=params.max_new_tokens,
            extra_system=extra_system,
        )
        stop = [*params.stop, f"\n{user_name}:"]
        params = params.model_copy(update={"stop": stop})
        result = StreamResult()
        return ReplyStream(backend.stream(build.messages, params, result), result, save)

    def _append(self, session: Any, conversation_id: str, text: str) -> MessageView:
        row = MessageRecord(
            id=uuid.uuid4().hex,
            conversation_id=conversation_id,
            position=self._next_position(session, conversation_id),
            role="assistant",
            content=text,
            alternatives=[],
        )
        session.add(row)
        conv = session.get(ConversationRecord, conversation_id)
        if conv is not None:
            conv.updated_at = utcnow()
        session.flush()
        return _msg_view(row)

    def _params(self, agent: AgentView, overrides: dict[str, Any] | None) -> GenerationSettings:
        if not overrides:
            return agent.generation
        return merge_generation(agent.generation.model_dump(), overrides)

    @staticmethod
    def _next_position(session: Any, conversation_id: str) -> int:
        last = session.scalar(
            select(func.max(MessageRecord.position)).where(
                MessageRecord.conversation_id == conversation_id
            )
        )
        return 0 if last is None else last + 1

    @staticmethod
    def _conv(session: Any, conversation_id: str) -> ConversationRecord:
        row = (
            session.get(ConversationRecord, conversation_id)
            if is_safe_id(conversation_id)
            else None
        )
        if row is None:
            raise NotFoundError(f"no conversation with id {conversation_id!r}")
        return row

    @staticmethod
    def _conv_view(row: ConversationRecord, *, with_messages: bool) -> ConversationView:
        return ConversationView(
            id=row.id,
            agent_id=row.agent_id,
            title=row.title,
            user_name=row.user_name,
            created_at=row.created_at,
            updated_at=row.updated_at,
            messages=[_msg_view(m) for m in row.messages] if with_messages else [],
        )


def _msg_view(row: MessageRecord) -> MessageView:
    return MessageView(
        id=row.id,
        position=row.position,
        role=row.role,
        content=row.content,
        alternatives=list(row.alternatives or []),
        created_at=row.created_at,
    )


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
