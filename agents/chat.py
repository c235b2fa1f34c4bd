"""Conversations with an agent: persisted chats, streamed replies, regenerate, swipes, edits,
branches, continue and impersonate.

A reply is a ``ReplyStream``: iterate it for text deltas (the API turns them into SSE, the UI
into a growing chat bubble); when iteration ends, normally or because the client went away,
whatever was generated is stored. The user's message is stored before generation starts, so
nothing the user typed is lost if the model fails.

Order is the order of sends (positions and history are stored by ``agents.conversations``).
A send takes two positions at once: its own and its reply's, so a reply lands right after the
message it answers even when other messages arrive while it streams. A conversation deleted
while its reply streams ends that reply with a 409 (an ``error`` frame when streaming); the
reply is not stored. So does an edit or a delete: a reply stores itself only if the
conversation's ``revision`` is still the one it started from (``agents.message_edits``).

Changing stored messages (swipes, edits, deletes, branches) lives in ``agents.message_edits``,
how generated text is stored and the prompt tails of continue and impersonate in
``agents.reply_modes``, the stream itself in ``agents.reply_stream``. ``ChatService`` is the
one front door to all of them, so the API and the UI call the same methods.

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
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from agents import message_edits, reply_modes
from agents.conversation_access import ConversationAccess
from agents.conversations import (
    ConversationView,
    MessageView,
    conversation_row,
    conversation_view,
    new_message,
    recent_history,
    take_positions,
)
from agents.grounding import Grounder, Grounding
from agents.group_turns import GroupTurn, next_speaker, turn_for
from agents.llm.base import LLMBackend, StreamResult
from agents.llm.options import with_options
from agents.llm.pool import LLMPool
from agents.llm.scheduler import tenant_scope
from agents.lorebook import scan_depth_needed
from agents.memory import MemoryService
from agents.personas import PersonaView
from agents.prompt import build_prompt, char_name, greetings
from agents.prompt_parts import ChatExtras
from agents.records import ConversationRecord, MessageRecord
from agents.reply_stream import ReplyStream, Usage
from agents.schema import ChatMessage, GenerationSettings
from agents.service import AgentService, AgentView, merge_generation
from core.db import Database
from core.errors import NotFoundError, ValidationError
from core.principal import Principal

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 32_000
# Versions one regenerate may ask for at once (each is its own request to the engine).
MAX_VERSIONS_PER_CALL = 8


@dataclass(frozen=True)
class _Turn:
    """What one generation for an agent needs: its card, settings, model and token counter."""

    card: Any
    params: GenerationSettings
    backend: LLMBackend
    count: Callable[[str], int]


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
        memory: MemoryService | None = None,
    ) -> None:
        self.db = db
        self.agents = agents
        self.llm = llm
        self.knowledge = knowledge
        self.access = access or ConversationAccess()
        self.memory = memory  # persona, author's note, summary and pins in the prompt
        # Usage metering (``UsageService.track``), set by container.py: every send and
        # regenerate is recorded, whether the API or the studio asked for it.
        self.meter: Callable[..., None] | None = None

    # ----- conversations -------------------------------------------------------------
    def create_conversation(
        self,
        agent_id: str,
        user_name: str = "User",
        greeting: int = 0,
        persona: PersonaView | None = None,
        *,
        principal: Principal,
    ) -> ConversationView:
        """A new chat that opens with the agent's greeting (the others become swipes); it
        belongs to ``principal`` (its wallet, or its browser's visitor id). With a
        ``persona`` (``PersonaService.for_new_chat``), ``{{user}}`` is its name."""
        owner = self.access.owner_of_new(principal)
        card = self.agents.get_card(agent_id)
        user_name = (user_name or "User").strip()[:100] or "User"
        options = greetings(card.data, persona.name if persona else user_name)
        conv = ConversationRecord(
            id=uuid.uuid4().hex,
            agent_id=agent_id,
            user_name=user_name,
            next_position=1 if options else 0,
            **owner,
            persona_id=persona.id if persona else None,
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
            agent_id = speaker or conv.agent_id
            revision = message_edits.revision_of(s, conv.id)
            group = turn_for(s, conv, speaker) if speaker else None
        if silent:
            waiting = ReplyStream(iter(()), StreamResult(), lambda _: None)
            waiting.waiting = True
            return waiting
        with tenant_scope(principal):  # queued in the caller's own lane (fair scheduling)
            reply = self._reply(
                conversation_id,
                agent_id,
                generation,
                revision=revision,
                slot=position + 1,
                group=group,
            )
        return self._metered(reply, principal, agent_id, "chat.send")

    def regenerate(
        self,
        conversation_id: str,
        generation: dict[str, Any] | None = None,
        *,
        principal: Principal,
    ) -> ReplyStream:
        """A new version of the last reply, shown; the earlier ones stay as its versions."""
        agent_id, revision, target, group = self._last_reply(conversation_id, principal)
        with tenant_scope(principal):
            reply = self._reply(
                conversation_id,
                agent_id,
                generation,
                revision=revision,
                replace=target,
                group=group,
            )
        return self._metered(reply, principal, agent_id, "chat.regenerate")

    def regenerate_versions(
        self,
        conversation_id: str,
        n: int,
        generation: dict[str, Any] | None = None,
        *,
        principal: Principal,
    ) -> tuple[MessageView, Usage]:
        """``n`` new versions of the last reply in one call; the last one stored is shown.

        Each version is its own request to the engine, all started at once, so an engine
        that batches (llama.cpp) writes them together."""
        if not 1 <= n <= MAX_VERSIONS_PER_CALL:
            raise ValidationError(f"n must be between 1 and {MAX_VERSIONS_PER_CALL}")
        agent_id, revision, target, group = self._last_reply(conversation_id, principal)
        with tenant_scope(principal):
            replies = [
                self._reply(
                    conversation_id,
                    agent_id,
                    generation,
                    revision=revision,
                    replace=target,
                    group=group,
                )
                for _ in range(n)
            ]
        for reply in replies:
            self._metered(reply, principal, agent_id, "chat.regenerate")
        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="versions") as pool:
            list(pool.map(ReplyStream.collect, replies))
        stored = [r.message for r in replies if r.message is not None]
        if not stored:
            raise ValidationError("the model returned only empty replies: try again")
        usage = Usage(finish_reason=replies[-1].usage.finish_reason)
        for r in replies:
            usage.prompt_tokens += r.usage.prompt_tokens
            usage.completion_tokens += r.usage.completion_tokens
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        return max(stored, key=lambda m: len(m.versions)), usage

    def continue_reply(
        self,
        conversation_id: str,
        generation: dict[str, Any] | None = None,
        *,
        principal: Principal,
    ) -> ReplyStream:
        """More of the last reply's shown version, streamed and appended to it in place."""
        with self.db.session() as s:
            conv = self._row(s, conversation_id, principal, write=True)
            last = reply_modes.last_message(s, conv.id)
            if last is None or last.role != "assistant":
                raise ValidationError("nothing to continue: the last message is not a reply")
            # In a group chat the agent who wrote the reply goes on with it.
            agent_id = (last.speaker_id if conv.members else None) or conv.agent_id
            revision = conv.revision
            target, position, partial = last.id, last.position, last.content
            index = min(last.selected or 0, len(last.versions or [partial]) - 1)
        turn = self._turn(agent_id, generation)
        user_name, history, extras = self._history(conversation_id, turn, position)
        save = reply_modes.continuation_saver(self.db, conversation_id, target, index, revision)
        with tenant_scope(principal):
            reply = self._stream(
                turn.backend,
                turn.card.data,
                history,
                turn.params,
                user_name,
                None,
                save,
                count_tokens=turn.count,
                tail=lambda messages: reply_modes.continued(messages, partial),
                reserve=turn.count(partial),
                extras=extras,
            )
        return self._metered(reply, principal, agent_id, "chat.continue")

    def impersonate(
        self,
        conversation_id: str,
        generation: dict[str, Any] | None = None,
        *,
        principal: Principal,
    ) -> ReplyStream:
        """A draft of the user's next message, streamed and never stored."""
        with self.db.session() as s:
            agent_id = self._row(s, conversation_id, principal, write=True).agent_id
        turn = self._turn(agent_id, generation)
        # The persona (when the chat has one) is who the draft is written as.
        user_name, history, extras = self._history(conversation_id, turn, None)
        char = char_name(turn.card.data)
        with tenant_scope(principal):
            reply = self._stream(
                turn.backend,
                turn.card.data,
                history,
                turn.params,
                user_name,
                None,
                lambda _: None,
                count_tokens=turn.count,
                tail=lambda messages: reply_modes.impersonating(messages, char, user_name),
                stop_as=char,
                extras=extras,
            )
        return self._metered(reply, principal, agent_id, "chat.impersonate")

    # ----- changing stored messages (agents.message_edits) ---------------------------
    def select_version(
        self, conversation_id: str, message_id: str, index: int, *, principal: Principal
    ) -> MessageView:
        """Show version ``index`` of a message (a swipe); the next reply reads that one."""
        load = self._loader(conversation_id, principal)
        return message_edits.pick_version(self.db, load, message_id, index)

    def edit_message(
        self, conversation_id: str, message_id: str, content: str, *, principal: Principal
    ) -> MessageView:
        """The edited text becomes the message's newest version, shown; the old ones stay."""
        content = _check_text(content)
        load = self._loader(conversation_id, principal)
        return message_edits.edit_message(self.db, load, message_id, content)

    def delete_message(
        self,
        conversation_id: str,
        message_id: str,
        *,
        and_after: bool = False,
        principal: Principal,
    ) -> int:
        """Delete a message, or it and every later one; returns how many were deleted."""
        load = self._loader(conversation_id, principal)
        return message_edits.delete_messages(self.db, load, message_id, and_after=and_after)

    def branch(
        self, conversation_id: str, message_id: str, *, principal: Principal
    ) -> ConversationView:
        """A new conversation with the history up to and including ``message_id``."""
        owner = self.access.owner_of_new(principal)
        load = self._loader(conversation_id, principal, write=False)
        return message_edits.branch_conversation(self.db, load, message_id, owner)

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

    def _turn(self, agent_id: str, generation: dict[str, Any] | None) -> _Turn:
        agent, card = self.agents.get_with_card(agent_id)
        backend = self.llm.get(agent.model, agent.adapter)
        count = functools.lru_cache(maxsize=4096)(backend.count_tokens)
        return _Turn(card, self._params(agent, generation), backend, count)

    def _history(
        self,
        conversation_id: str,
        turn: _Turn,
        before: int | None,
        group: GroupTurn | None = None,
    ) -> tuple[str, list[ChatMessage], ChatExtras | None]:
        """The user's name, the history before ``before`` and, with memory, the chat's
        persona, author's note, summary and pinned messages for the prompt."""
        user_name, history = recent_history(
            self.db,
            conversation_id,
            before,
            budget=turn.backend.context_window,
            count=turn.count,
            at_least=scan_depth_needed(turn.card.data.character_book),
            render=group.render if group else None,
        )
        if self.memory is None:
            return user_name, history, None
        return self.memory.prompt_context(conversation_id, before, user_name, history)

    def _last_reply(
        self, conversation_id: str, principal: Principal
    ) -> tuple[str, int, tuple[str, int], GroupTurn | None]:
        """The agent, revision, (id, position) of the reply regenerate replaces, and in a
        group chat the turn of the agent who spoke it (that agent writes its new version)."""
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
            last = last_two[0]
            speaker = last.speaker_id if conv.members else None
            group = turn_for(s, conv, speaker) if speaker else None
            target = (last.id, last.position)
            return speaker or conv.agent_id, conv.revision, target, group

    def _loader(
        self, conversation_id: str, principal: Principal, *, write: bool = True
    ) -> message_edits.Loader:
        """Loads the conversation's row for ``agents.message_edits``, checked like ``_row``."""
        return lambda session: self._row(session, conversation_id, principal, write=write)

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
        revision: int,
        slot: int | None = None,
        replace: tuple[str, int] | None = None,
        group: GroupTurn | None = None,
    ) -> ReplyStream:
        """The reply stored at the reserved ``slot``, or replacing message ``replace``; not
        stored if the conversation changed from ``revision`` meanwhile. ``group``: a group
        chat's turn (how the speaker sees the others, and its name)."""
        turn = self._turn(agent_id, generation)
        before = replace[1] if replace is not None else slot
        user_name, history, extras = self._history(conversation_id, turn, before, group)
        save = reply_modes.reply_saver(
            self.db,
            conversation_id,
            revision,
            slot=slot,
            target=replace[0] if replace is not None else None,
            group=group,
        )
        grounding = self._ground(agent_id, history)
        reply = self._stream(
            turn.backend,
            turn.card.data,
            history,
            turn.params,
            user_name,
            None,
            _then_check_memory(save, self.memory, conversation_id),
            grounding,
            count_tokens=turn.count,
            stops=group.stops() if group else (),
            extras=extras,
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
        *,
        tail: Callable[[list[ChatMessage]], list[ChatMessage]] | None = None,
        reserve: int = 0,
        stop_as: str | None = None,
        stops: Sequence[str] = (),
        extras: ChatExtras | None = None,
    ) -> ReplyStream:
        """Build the prompt and start generating. ``tail`` finishes the prompt (continue,
        impersonate) and ``reserve`` is the room it needs beyond the reply; generation
        stops where the model starts a line as ``stop_as`` (the user, unless given)."""
        build = build_prompt(
            card,
            history,
            user_name=user_name,
            count_tokens=count_tokens or backend.count_tokens,
            context_window=backend.context_window,
            max_new_tokens=params.max_new_tokens + reserve,
            extra_system=extra_system,
            knowledge=grounding.prompt_blocks() if grounding else (),
            extras=extras,
        )
        messages = tail(build.messages) if tail is not None else build.messages
        # Anima's own stop first: a backend that can send only a few (OpenAI's API takes
        # four) must never drop the one that keeps the model from speaking for the user.
        stop = list(dict.fromkeys([f"\n{stop_as or user_name}:", *stops, *params.stop]))
        params = params.model_copy(update={"stop": stop})
        result = StreamResult()
        if grounding is not None and self.knowledge is not None:
            save = _saving_trace(save, self.knowledge, grounding, build.knowledge_used)
        reply = ReplyStream(backend.stream(messages, params, result), result, save)
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
