"""How ``ChatService`` generates one reply: the agent's turn (card, settings, model), the
history that fits its context, grounding in knowledge bases, and the stream that stores the
text when it ends.

Every way to reply (send, regenerate, continue, impersonate, a group chat's turn) goes
through ``_stream``, so the prompt, the stop strings and the retrieval trace are built one way.
Grounding sits in ``_ground`` and ``_stream`` only; nothing else is aware of knowledge.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from agents import reply_modes
from agents.chat_conversations import ConversationLifecycle
from agents.conversations import MessageView, recent_history
from agents.grounding import Grounder, Grounding
from agents.group_turns import GroupTurn, turn_for
from agents.llm.base import LLMBackend, StreamResult
from agents.llm.pool import LLMPool
from agents.lorebook import LoreSource, scan_depth_needed, with_books
from agents.memory import MemoryService
from agents.prompt import build_prompt
from agents.prompt_parts import ChatExtras
from agents.records import MessageRecord
from agents.reply_stream import ReplyStream
from agents.schema import ChatMessage, GenerationSettings
from agents.service import AgentView, merge_generation
from core.errors import ValidationError
from core.principal import Principal


@dataclass(frozen=True)
class _Turn:
    """What one generation for an agent needs: its card, settings, model and token counter."""

    card: Any
    params: GenerationSettings
    backend: LLMBackend
    count: Callable[[str], int]


class ReplyGeneration(ConversationLifecycle):
    """Part of ``ChatService`` (``agents.chat``), which sets these attributes."""

    llm: LLMPool
    knowledge: Grounder | None
    memory: MemoryService | None
    meter: Callable[..., None] | None
    # Standalone lorebooks attached to agents (set in container.py); their entries join the
    # card's own book for every reply.
    lore: LoreSource | None = None

    def _agent_card(self, agent_id: str) -> tuple[AgentView, Any]:
        """The agent and its card as a reply sees it: attached books' entries included."""
        agent, card = self.agents.get_with_card(agent_id)
        if self.lore is not None:
            card = with_books(card, self.lore.books_for(agent_id))
        return agent, card

    def _turn(self, agent_id: str, generation: dict[str, Any] | None) -> _Turn:
        agent, card = self._agent_card(agent_id)
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
