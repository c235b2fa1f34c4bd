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

Privacy: a conversation belongs to whoever started it (``agents.conversation_access``). Every
method that loads one takes the caller (``principal``) and calls ``_row``, which checks it.
"""

from __future__ import annotations

import functools
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import anyio
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from agents.conversation_access import ConversationAccess
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
from agents.group_turns import GroupTurn, next_speaker, turn_for
from agents.llm.base import LLMBackend, StreamResult
from agents.llm.options import with_options
from agents.llm.pool import LLMPool
from agents.llm.scheduler import tenant_scope
from agents.lorebook import scan_depth_needed
from agents.prompt import build_prompt, greetings
from agents.records import ConversationRecord, MessageRecord
from agents.schema import ChatMessage, GenerationSettings
from agents.service import AgentService, AgentView, merge_generation
from core.db import Database
from core.errors import AnimaError, ConflictError, NotFoundError, ValidationError
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
        # Called with (reply, outcome) once it ends: "ok", "cancelled" or "error:<status>".
        # Usage metering listens here, so it sees every reply however it is consumed.
        self.on_finish: list[Callable[[ReplyStream, str], None]] = []
        self.outcome = "ok"

    @property
    def result(self) -> StreamResult:
        """What the backend reports while it streams (log-probabilities) and when done."""
        return self._result
        self.name: str | None = None  # the speaking member and its id, in a group chat
        self.speaker_id: str | None = None
        self.waiting = False  # a group chat that replies only when asked: nothing comes

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
            self.outcome = _outcome(finished, sys.exc_info()[1])
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
            self.outcome = _outcome(finished, sys.exc_info()[1])
            with anyio.CancelScope(shield=True):  # store what arrived, even when cancelled
                await anyio.to_thread.run_sync(self._finish, parts, finished)

    def _finish(self, parts: list[str], finished: bool) -> None:
        try:
            self._store(parts, finished)
        finally:
            for listener in self.on_finish:
                try:
                    listener(self, self.outcome)
                except Exception:  # a listener's bug must not lose the reply
                    log.exception("reply listener failed")

    def _store(self, parts: list[str], finished: bool) -> None:
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
    """Anyone may start a chat with a public agent; it is then the starter's own. Every method
    that reads or changes a conversation takes the caller (``principal``) and checks it with
    ``access`` (``agents.conversation_access``)."""

    def __init__(
        self,
        db: Database,
        agents: AgentService,
        llm: LLMPool,
        knowledge: Grounder | None = None,
        access: ConversationAccess | None = None,
    ) -> None:
        self.db = db
        self.agents = agents
        self.llm = llm
        self.knowledge = knowledge
        self.access = access or ConversationAccess()
        # Usage metering (``UsageService.track``), set by container.py: every send and
        # regenerate is recorded, whether the API or the studio asked for it.
        self.meter: Callable[..., None] | None = None

    # ----- conversations -------------------------------------------------------------
    def create_conversation(
        self, agent_id: str, user_name: str = "User", greeting: int = 0, *, principal: Principal
    ) -> ConversationView:
        """A new chat that opens with the agent's greeting (the others become swipes); it
        belongs to ``principal`` (its wallet, or its browser's visitor id)."""
        owner = self.access.owner_of_new(principal)
        card = self.agents.get_card(agent_id)
        user_name = (user_name or "User").strip()[:100] or "User"
        options = greetings(card.data, user_name)
        conv = ConversationRecord(
            id=uuid.uuid4().hex,
            agent_id=agent_id,
            user_name=user_name,
            next_position=1 if options else 0,
            **owner,
        )
        with self.db.session() as s:
            s.add(conv)
            if options:
                # Every greeting is a version of the first message (swipes), in card order.
                s.add(new_message(conv.id, 0, "assistant", options, greeting % len(options)))
        return self.get_conversation(conv.id, principal=principal)

    def list_conversations(self, agent_id: str, *, principal: Principal) -> list[ConversationView]:
        """The agent's chats that ``principal`` may read (its own, and shared old ones)."""
        self.agents.get_agent(agent_id)
        with self.db.session() as s:
            rows = s.scalars(
                select(ConversationRecord)
                .where(ConversationRecord.agent_id == agent_id)
                .where(self.access.visible(principal))
                .order_by(ConversationRecord.updated_at.desc())
            ).all()
            return [conversation_view(r, with_messages=False) for r in rows]

    def get_conversation(self, conversation_id: str, *, principal: Principal) -> ConversationView:
        with self.db.session() as s:
            row = self._row(s, conversation_id, principal)
            return conversation_view(row, with_messages=True)

    def delete_conversation(self, conversation_id: str, *, principal: Principal) -> None:
        with self.db.session() as s:
            s.delete(self._row(s, conversation_id, principal, write=True))

    def claim_conversation(self, conversation_id: str, *, principal: Principal) -> ConversationView:
        """Make a shared conversation (started before chats had owners) the caller's own."""
        with self.db.session() as s:
            row = conversation_row(s, conversation_id)
            self.access.claim(row, principal)
            return conversation_view(row, with_messages=True)

    def adopt_visitor_conversations(self, *, principal: Principal) -> int:
        """Move the conversations of ``principal``'s visitor id to its wallet (on sign-in): an
        anonymous visitor who signs in keeps the chats made before, from any browser.
        Returns how many moved."""
        if principal.address is None or principal.visitor_id is None:
            return 0
        with self.db.session() as s:
            moved = s.execute(
                update(ConversationRecord)
                .where(ConversationRecord.visitor_id == principal.visitor_id)
                .where(ConversationRecord.owner_address.is_(None))
                .values(owner_address=principal.address)
                .execution_options(synchronize_session=False)
            )
            return int(moved.rowcount or 0)

    def require_message(self, message_id: str, *, principal: Principal) -> None:
        """Allow ``principal`` to read message ``message_id`` (e.g. its retrieval trace)."""
        with self.db.session() as s:
            message = s.get(MessageRecord, message_id)
            if message is None:
                raise NotFoundError(f"no message with id {message_id!r}")
            row = conversation_row(s, message.conversation_id)
            if not self.access.allows(row, principal):
                raise NotFoundError(f"no message with id {message_id!r}")

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
            conv = self._row(s, conversation_id, principal, write=True)
            # A group chat answers by its reply order; "manual" waits for "let X reply".
            speaker = next_speaker(s, conv, content)
            silent = bool(conv.members) and speaker is None
            # Two slots at once: this message and, right after it, the reply to it.
            position = take_positions(s, conv.id, 1 if silent else 2)
            s.add(new_message(conv.id, position, "user", [content]))
            if not conv.title:
                conv.title = content[:60]
            agent_id = conv.agent_id
            group = turn_for(s, conv, speaker) if speaker else None
        if silent:
            waiting = ReplyStream(iter(()), StreamResult(), lambda _: None)
            waiting.waiting = True
            return waiting
        with tenant_scope(principal):  # queued in the caller's own lane (fair scheduling)
            reply = self._reply(
                conversation_id, speaker or agent_id, generation, slot=position + 1, group=group
            )
        return self._metered(reply, principal, speaker or agent_id, "chat.send")

    def regenerate(
        self,
        conversation_id: str,
        generation: dict[str, Any] | None = None,
        *,
        principal: Principal,
    ) -> ReplyStream:
        """A new version of the last reply, shown; the earlier ones stay as its versions."""
        with self.db.session() as s:
            conv = self._row(s, conversation_id, principal, write=True)
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
            # In a group chat the agent who spoke the reply writes its new version.
            speaker = target.speaker_id if conv.members else None
            group = turn_for(s, conv, speaker) if speaker else None
        with tenant_scope(principal):
            reply = self._reply(
                conversation_id,
                speaker or agent_id,
                generation,
                replace=(target_id, target_position),
                group=group,
            )
        return self._metered(reply, principal, speaker or agent_id, "chat.regenerate")

    def complete(
        self,
        agent_id: str,
        messages: list[ChatMessage],
        generation: dict[str, Any] | None = None,
        user_name: str = "User",
        options: dict[str, Any] | None = None,
    ) -> ReplyStream:
        """A stateless reply to a client-held history (the OpenAI-compatible path).

        ``options`` are one request's (``agents.llm.options``): refused with a 400 naming
        the parameter where the agent's backend cannot honour them.
        """
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
        if options:
            params = with_options(params, options, backend)
        grounding = self._ground(agent_id, history)
        return self._stream(
            backend, card.data, history, params, user_name, extra, lambda _: None, grounding
        )

    # ----- internals -----------------------------------------------------------------
    def _row(
        self, session: Any, conversation_id: str, principal: Principal, *, write: bool = False
    ) -> ConversationRecord:
        """The conversation's row, once ``principal`` may read it (or, with ``write``, change
        it); 404 for a missing one or someone else's, 403 for changing someone else's."""
        row = conversation_row(session, conversation_id)
        self.access.require(row, principal, write=write)
        return row

    def _metered(
        self, reply: ReplyStream, principal: Principal, agent_id: str, route: str
    ) -> ReplyStream:
        if self.meter is not None:
            self.meter(reply, principal=principal, agent_id=agent_id, route=route)
        return reply

    def _reply(
        self,
        conversation_id: str,
        agent_id: str,
        generation: dict[str, Any] | None,
        *,
        slot: int | None = None,
        replace: tuple[str, int] | None = None,
        group: GroupTurn | None = None,
    ) -> ReplyStream:
        """The reply stored at the reserved ``slot``, or replacing message ``replace``;
        ``group``: a group chat's turn (how the speaker sees the others, and its name)."""
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
            render=group.render if group else None,
        )
        target = replace[0] if replace is not None else None

        def save(text: str) -> MessageView:
            text = group.clean(text) if group else text
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
                    return insert_reply(
                        s, conversation_id, position, text, **(group.stored() if group else {})
                    )
            except IntegrityError as exc:  # the conversation went away between the checks
                raise ConflictError(DELETED_MID_REPLY) from exc

        grounding = self._ground(agent_id, history)
        reply = self._stream(
            backend,
            card.data,
            history,
            params,
            user_name,
            None,
            save,
            grounding,
            count_tokens=count,
            stops=group.stops() if group else (),
        )
        if group is not None:
            reply.name, reply.speaker_id = group.name, group.speaker_id
        return reply

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
        stops: Sequence[str] = (),
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
        )
        # Anima's own stop first: a backend that can send only a few (OpenAI's API takes
        # four) must never drop the one that keeps the model from speaking for the user.
        stop = list(dict.fromkeys([f"\n{user_name}:", *stops, *params.stop]))
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


def _outcome(finished: bool, error: BaseException | None) -> str:
    if finished:
        return "ok"
    if isinstance(error, AnimaError):
        return f"error:{error.status}"
    if error is None or isinstance(error, GeneratorExit | anyio.get_cancelled_exc_class()):
        return "cancelled"  # the reader stopped reading (or went away)
    return "error:500"


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
