"""The reply modes beyond send and regenerate: several versions in one call, continuing the
last reply, and a draft of the user's next message (impersonate).

Each is a different prompt tail or saver (``agents.reply_modes``) around the same generation
(``agents.chat_generation``); they live apart from ``ChatService``'s core so the core reads as
the plain send-and-reply path.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents import reply_modes
from agents.chat_generation import ReplyGeneration
from agents.conversations import MessageView
from agents.llm.scheduler import tenant_scope
from agents.prompt import char_name
from agents.reply_stream import ReplyStream, Usage
from core.errors import ValidationError
from core.principal import Principal

# Versions one regenerate may ask for at once (each is its own request to the engine).
MAX_VERSIONS_PER_CALL = 8


class ExtraReplies(ReplyGeneration):
    """Part of ``ChatService`` (``agents.chat``)."""

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
