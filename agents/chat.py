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
one front door to all of them, so the API and the UI call the same methods. It is built from
one part per responsibility: the conversation lifecycle (``agents.chat_conversations``), how
one reply is generated (``agents.chat_generation``) and the reply modes beyond send and
regenerate (``agents.chat_extra_replies``); this module holds send, regenerate, message edits
and the stateless ``complete``.

Grounding (knowledge bases): when the agent uses knowledge bases, the newest user
message is the query; the chunks found go into the prompt with numbered markers, the reply
carries them as ``sources``, and a stored reply keeps its retrieval trace. All of it sits in
``_ground`` and ``_stream`` (``agents.chat_generation``); everything else is unaware of
knowledge.

Privacy: a conversation belongs to whoever started it (``agents.conversation_access``). Every
method that loads one takes the caller (``principal``) and calls ``_row``, which checks it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agents import message_edits
from agents.chat_extra_replies import MAX_VERSIONS_PER_CALL, ExtraReplies
from agents.conversation_access import ConversationAccess
from agents.conversations import (
    ConversationView,
    MessageView,
    new_message,
    take_positions,
)
from agents.grounding import Grounder
from agents.group_turns import next_speaker, turn_for
from agents.llm.base import StreamResult
from agents.llm.options import with_options
from agents.llm.pool import LLMPool
from agents.llm.scheduler import tenant_scope
from agents.memory import MemoryService
from agents.reply_stream import ReplyStream, Usage
from agents.schema import ChatMessage
from agents.service import AgentService
from core.db import Database
from core.errors import ValidationError
from core.principal import Principal

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 32_000


class ChatService(ExtraReplies):
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
        agent, card = self._agent_card(agent_id)
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

    def _loader(
        self, conversation_id: str, principal: Principal, *, write: bool = True
    ) -> message_edits.Loader:
        """Loads the conversation's row for ``agents.message_edits``, checked like ``_row``."""
        return lambda session: self._row(session, conversation_id, principal, write=write)


def _check_text(content: str) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("message is empty")
    if len(content) > MAX_MESSAGE_CHARS:
        raise ValidationError(f"message is longer than {MAX_MESSAGE_CHARS} characters")
    return content


__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_VERSIONS_PER_CALL",
    "ChatService",
    "ConversationView",
    "MessageView",
    "ReplyStream",
    "Usage",
]
