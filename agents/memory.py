"""A conversation's memory and prompt settings: persona, author's note, running summary, pins.

Why a summary, and why in the background: a chat that outgrows the context window loses its
oldest turns from the prompt. Those turns are summarised by the agent's own model into a
running summary that the prompt carries instead (``agents.prompt_parts`` says where). Writing
it takes a whole generation, so it is never done while a user waits for a reply: after a
reply is stored, ``after_reply`` checks whether the next prompt would drop turns the summary
does not cover yet and, if so, queues one ``chat.summarise`` job for the conversation (at most
one queued or running per conversation). A reply only reads the stored summary.

The summary covers the messages before ``summary_upto``; the prompt leaves those out (a pinned
one stays) and starts at ``summary_upto``. The job moves ``summary_upto`` forward so that the
newest turns fill about half of the history's room: the prompt's beginning then stays the same
for many turns, which lets the engine reuse its cached prefix instead of re-reading the
window on every send. A pinned summary (``summary_pinned``) is the user's: the job never
rewrites it. Pinned messages always stay in the prompt, however old.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from agents.conversation_access import ConversationAccess
from agents.conversations import (
    ConversationView,
    MessageView,
    conversation_row,
    conversation_view,
    message_view,
    recent_history,
)
from agents.llm.pool import LLMPool
from agents.lorebook import LoreSource, scan_depth_needed, with_books
from agents.personas import PersonaRecord, PersonaService
from agents.prompt import (
    MESSAGE_OVERHEAD_TOKENS,
    PROMPT_OVERHEAD_TOKENS,
    PromptBuild,
    build_prompt,
    char_name,
)
from agents.prompt_parts import AuthorsNote, ChatExtras
from agents.records import MessageRecord, utcnow
from agents.schema import ChatMessage
from agents.service import AgentService, merge_generation
from core.db import Database
from core.errors import NotFoundError, ValidationError
from core.jobs import JobContext, JobService, TargetGone, job_kind
from core.principal import SYSTEM, Principal

log = logging.getLogger(__name__)

SUMMARISE_KIND = "chat.summarise"
CONVERSATION_TARGET = "conversation"
MAX_NOTE_CHARS = 4_000
MAX_SUMMARY_CHARS = 8_000
MAX_NOTE_DEPTH = 100
MAX_NOTE_FREQUENCY = 100
# Fewer new messages than this are not worth a summary run yet.
MIN_MESSAGES_TO_SUMMARISE = 4
# After a summary, the newest turns fill this share of the history's room (see the docstring).
KEEP_SHARE = 0.5
SUMMARY_TOKENS = 160
# Turns read per generation: a short prompt keeps each step well inside the request deadline
# on a busy CPU, and a step that fails re-runs only its own chunk.
CHUNK_PROMPT_TOKENS = 1536
MAX_CHUNKS = 64  # one job never runs more generations than this
SUMMARY_INSTRUCTIONS = (
    "You keep the memory of a role-play chat between {{char}} and {{user}}. Write a short "
    "summary in the past tense of everything important so far: facts, names, places, what "
    "happened and what was promised. Reply with the summary only."
)


class ChatSettings(BaseModel):
    """A PATCH of a conversation's prompt settings: only the fields given change."""

    persona_id: str | None = Field(default=None, max_length=36)
    authors_note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)
    authors_note_depth: int | None = Field(default=None, ge=0, le=MAX_NOTE_DEPTH)
    authors_note_frequency: int | None = Field(default=None, ge=0, le=MAX_NOTE_FREQUENCY)
    summary: str | None = Field(default=None, max_length=MAX_SUMMARY_CHARS)
    summary_pinned: bool | None = None


@dataclass(frozen=True)
class MemoryDeps:
    """What the summary job uses (handed over in ``container.py``)."""

    memory: MemoryService


class MemoryService:
    """Conversation prompt settings, pins and the running summary.

    Every method that reads a conversation takes the caller as ``principal`` and loads the row
    through ``_load``, which asks the conversation access rule (``agents.conversation_access``):
    someone else's chat is a 404 to read and a 403 to change.
    """

    # Standalone lorebooks attached to agents (set in container.py).
    lore: LoreSource | None = None

    def __init__(
        self,
        db: Database,
        agents: AgentService,
        llm: LLMPool,
        jobs: JobService,
        personas: PersonaService,
        access: ConversationAccess | None = None,
    ) -> None:
        self.db = db
        self.agents = agents
        self.llm = llm
        self.jobs = jobs
        self.personas = personas
        self.access = access or ConversationAccess()

    def require_changeable(self, principal: Principal, conversation_id: str) -> None:
        """Allow ``principal`` to change the conversation (who may see or cancel its summary
        job), or raise 403 (404 when it is gone)."""
        with self.db.session() as s:
            self._load(s, conversation_id, principal, write=True)

    def _load(
        self, session: Any, conversation_id: str, principal: Principal, *, write: bool
    ) -> Any:
        row = conversation_row(session, conversation_id)
        self.access.require(row, principal, write=write)
        return row

    # ----- settings and pins (REST and the side panel) --------------------------------
    def update_settings(
        self, conversation_id: str, changes: ChatSettings, *, principal: Principal
    ) -> ConversationView:
        """Change the fields set in ``changes``; a persona must be the caller's (404)."""
        given = changes.model_dump(exclude_unset=True)
        if given.get("persona_id"):
            self.personas.get(given["persona_id"], principal=principal)
        with self.db.session() as s:
            conv = self._load(s, conversation_id, principal, write=True)
            for key, value in given.items():
                if key in ("authors_note", "summary"):
                    value = (value or "").strip()
                elif key == "persona_id":
                    value = value or None  # "" as well as null: the chat's own user name
                elif value is None and key != "persona_id":  # None clears the persona only
                    raise ValidationError(f"{key} cannot be null")
                setattr(conv, key, value)
            conv.updated_at = utcnow()
            s.flush()
            return conversation_view(conv, with_messages=False)

    def pin(
        self, conversation_id: str, message_id: str, pinned: bool, *, principal: Principal
    ) -> MessageView:
        """Pin (keep in every prompt) or unpin one message of the conversation."""
        with self.db.session() as s:
            conv = self._load(s, conversation_id, principal, write=True)
            row = s.get(MessageRecord, message_id)
            if row is None or row.conversation_id != conv.id:
                raise NotFoundError(f"no message {message_id!r} in conversation {conv.id!r}")
            row.pinned = pinned
            s.flush()
            return message_view(row)

    def pinned_messages(self, conversation_id: str, *, principal: Principal) -> list[MessageView]:
        with self.db.session() as s:
            conv = self._load(s, conversation_id, principal, write=False)
            rows = s.scalars(
                select(MessageRecord)
                .where(MessageRecord.conversation_id == conv.id, MessageRecord.pinned)
                .order_by(MessageRecord.position)
            ).all()
            return [message_view(r) for r in rows]

    def preview(self, conversation_id: str, *, principal: Principal) -> PromptBuild:
        """The prompt the agent would read if it replied now (what the side panel shows)."""
        with self.db.session() as s:
            self._load(s, conversation_id, principal, write=False)
        return self._dry_build(conversation_id)[0]

    # ----- the reply path: read only, no generation -----------------------------------
    def prompt_context(
        self,
        conversation_id: str,
        before: int | None,
        user_name: str,
        history: list[ChatMessage],
    ) -> tuple[str, list[ChatMessage], ChatExtras]:
        """The name for ``{{user}}``, the history to build from and the conversation's
        extras, given ``history``: the newest messages before position ``before``."""
        with self.db.session() as s:
            conv = conversation_row(s, conversation_id)
            marks = _positions(s, conv.id, before, len(history))
            oldest = marks[0][0] if marks else before
            old_pins = _pins_before(s, conv.id, oldest)
            turns = _user_turns(s, conv.id, before)
            persona = s.get(PersonaRecord, conv.persona_id) if conv.persona_id else None
            summary, upto = (conv.summary or "").strip(), conv.summary_upto or 0
            note = AuthorsNote(
                conv.authors_note or "", conv.authors_note_depth, conv.authors_note_frequency
            )
        kept: list[ChatMessage] = list(old_pins)
        pinned = set(range(len(old_pins)))
        for message, (position, is_pinned) in zip(history, marks, strict=False):
            if summary and position < upto and not is_pinned:
                continue  # the summary stands for it
            if is_pinned:
                pinned.add(len(kept))
            kept.append(message)
        extras = ChatExtras(
            persona=persona.description if persona else "",
            summary=summary,
            authors_note=note,
            user_turns=turns,
            pinned=frozenset(pinned),
        )
        return (persona.name if persona else user_name), kept, extras

    def after_reply(self, conversation_id: str) -> None:
        """Queue a summary job if the next prompt would drop turns the summary lacks.

        Called once a reply is stored; never raises (the reply is already safe)."""
        try:
            self.queue_summary(conversation_id, principal=SYSTEM)
        except Exception:  # a failed check must not turn a stored reply into an error
            log.exception("could not check conversation %s for a summary", conversation_id)

    def queue_summary(self, conversation_id: str, *, principal: Principal) -> str | None:
        """The id of the summary job queued (or already waiting) for the conversation, or
        ``None`` when the history still fits."""
        with self.db.session() as s:
            self._load(s, conversation_id, principal, write=True)
        upto = self._summary_target(conversation_id)
        if upto is None:
            return None
        waiting = self.jobs.list(
            kind=SUMMARISE_KIND,
            target_type=CONVERSATION_TARGET,
            target_id=conversation_id,
            limit=5,
            principal=SYSTEM,
        )
        for job in waiting:
            if not job.finished:
                return job.id
        job = self.jobs.submit(
            SUMMARISE_KIND,
            {"conversation_id": conversation_id, "upto": upto},
            target_type=CONVERSATION_TARGET,
            target_id=conversation_id,
            idempotency_key=f"{SUMMARISE_KIND}:{conversation_id}:{upto}",
        )
        return job.id

    # ----- the job's work --------------------------------------------------------------
    def summarise_chunk(self, conversation_id: str, upto: int) -> int | None:
        """Fold the next messages before ``upto`` into the summary; the new ``summary_upto``,
        or ``None`` when there is nothing (more) to do (pinned, changed meanwhile, done)."""
        try:
            with self.db.session() as s:
                conv = conversation_row(s, conversation_id)
                start, summary = conv.summary_upto or 0, conv.summary or ""
                if conv.summary_pinned or start >= upto:
                    return None
                agent_id, user_name = conv.agent_id, conv.user_name
                persona = s.get(PersonaRecord, conv.persona_id) if conv.persona_id else None
                rows = s.scalars(
                    select(MessageRecord)
                    .where(
                        MessageRecord.conversation_id == conv.id,
                        MessageRecord.position >= start,
                        MessageRecord.position < upto,
                    )
                    .order_by(MessageRecord.position)
                    .limit(200)
                ).all()
                lines = [(r.position, r.role, r.name, r.content) for r in rows]
        except NotFoundError as exc:
            raise TargetGone("the conversation was deleted") from exc
        if not lines:
            return None
        user = persona.name if persona else user_name
        text, reached = self._generate_summary(agent_id, user, summary, lines, upto)
        stored = self.store_summary(conversation_id, text, reached, start, principal=SYSTEM)
        return reached if stored else None

    def store_summary(
        self, conversation_id: str, text: str, upto: int, start: int, *, principal: Principal
    ) -> bool:
        """Store ``text`` as the summary of the messages before ``upto``, unless the summary
        was pinned or moved past ``start`` meanwhile (then False: nothing is written)."""
        with self.db.session() as s:
            conv = self._load(s, conversation_id, principal, write=True)
            if conv.summary_pinned or (conv.summary_upto or 0) != start:
                return False  # the user took it over, or another run moved on
            conv.summary, conv.summary_upto = text[:MAX_SUMMARY_CHARS], upto
        return True

    def summary_target(self, conversation_id: str, *, principal: Principal) -> int | None:
        """Where the summary should reach now, or ``None`` while the history fits."""
        with self.db.session() as s:
            self._load(s, conversation_id, principal, write=False)
        return self._summary_target(conversation_id)

    # ----- internals -------------------------------------------------------------------
    def _generate_summary(
        self,
        agent_id: str,
        user: str,
        summary: str,
        lines: list[tuple[int, str, str | None, str]],
        upto: int,
    ) -> tuple[str, int]:
        """The new summary and the position it now reaches (the lines that fit one prompt)."""
        agent, card = self.agents.get_with_card(agent_id)
        backend = self.llm.get(agent.model, agent.adapter)
        char = char_name(card.data)
        instructions = SUMMARY_INSTRUCTIONS.replace("{{char}}", char).replace("{{user}}", user)
        head = f"Summary so far: {summary or '(nothing yet)'}\n\nWhat happened next:\n"
        window = min(backend.context_window, CHUNK_PROMPT_TOKENS + SUMMARY_TOKENS)
        room = window - SUMMARY_TOKENS - PROMPT_OVERHEAD_TOKENS
        room -= backend.count_tokens(instructions + head) + 3 * MESSAGE_OVERHEAD_TOKENS
        taken: list[str] = []
        reached = lines[0][0]
        for position, role, name, content in lines:
            line = f"{name or (user if role == 'user' else char)}: {content}"
            cost = backend.count_tokens(line) + 1
            if taken and cost > room:
                break
            taken.append(line if cost <= room else line[: max(0, room) * 3])
            room -= cost
            reached = position + 1
        prompt = [
            ChatMessage(role="system", content=instructions),
            ChatMessage(role="user", content=head + "\n".join(taken)),
        ]
        params = merge_generation(
            agent.generation.model_dump(), {"max_new_tokens": SUMMARY_TOKENS, "temperature": 0.3}
        )
        text = backend.complete(prompt, params).text.strip()
        # A model that says nothing must not lose the turns: keep them as a plain digest.
        return (text or "\n".join([summary, *taken]).strip()), min(reached, upto)

    def _dry_build(self, conversation_id: str) -> tuple[PromptBuild, int, list[tuple[int, int]]]:
        """The prompt for a reply now, the tokens its history had room for, and the
        (position, tokens) of the newest messages it was built from, oldest first."""
        with self.db.session() as s:
            agent_id = conversation_row(s, conversation_id).agent_id
        agent, card = self.agents.get_with_card(agent_id)
        if self.lore is not None:  # the preview shows what a reply sees: attached books too
            card = with_books(card, self.lore.books_for(agent_id))
        backend = self.llm.get(agent.model, agent.adapter)
        count = functools.lru_cache(maxsize=4096)(backend.count_tokens)
        user_name, history = recent_history(
            self.db,
            conversation_id,
            None,
            budget=backend.context_window,
            count=count,
            at_least=scan_depth_needed(card.data.character_book),
        )
        with self.db.session() as s:
            marks = _positions(s, conversation_id, None, len(history))
        user_name, kept, extras = self.prompt_context(conversation_id, None, user_name, history)
        build = build_prompt(
            card.data,
            kept,
            user_name=user_name,
            count_tokens=count,
            context_window=backend.context_window,
            max_new_tokens=agent.generation.max_new_tokens,
            extras=extras,
        )
        room = backend.context_window - agent.generation.max_new_tokens - PROMPT_OVERHEAD_TOKENS
        room -= count(build.messages[0].content) + MESSAGE_OVERHEAD_TOKENS
        costs = [count(m.content) + MESSAGE_OVERHEAD_TOKENS for m in history]
        return build, room, [(p, c) for (p, _), c in zip(marks, costs, strict=False)]

    def _summary_target(self, conversation_id: str) -> int | None:
        """Where the summary should reach now, or ``None`` while the history fits."""
        with self.db.session() as s:
            conv = conversation_row(s, conversation_id)
            if conv.summary_pinned:
                return None
            start = conv.summary_upto or 0
        build, room, messages = self._dry_build(conversation_id)
        if build.dropped_history == 0 or not messages:
            return None
        spent, upto = 0, messages[-1][0] + 1
        for position, cost in reversed(messages):
            spent += cost
            if spent > room * KEEP_SHARE:
                break
            upto = position
        return upto if upto - start >= MIN_MESSAGES_TO_SUMMARISE else None


def _positions(session: Any, conversation_id: str, before: int | None, n: int) -> list[Any]:
    """(position, pinned) of the newest ``n`` messages before ``before``, oldest first."""
    query = select(MessageRecord.position, MessageRecord.pinned).where(
        MessageRecord.conversation_id == conversation_id
    )
    if before is not None:
        query = query.where(MessageRecord.position < before)
    rows = session.execute(query.order_by(MessageRecord.position.desc()).limit(n)).all()
    return [(r.position, bool(r.pinned)) for r in reversed(rows)]


def _pins_before(session: Any, conversation_id: str, before: int | None) -> list[ChatMessage]:
    if before is None:
        return []
    rows = session.scalars(
        select(MessageRecord)
        .where(
            MessageRecord.conversation_id == conversation_id,
            MessageRecord.pinned,
            MessageRecord.position < before,
        )
        .order_by(MessageRecord.position)
    ).all()
    return [ChatMessage(role=r.role, content=r.content) for r in rows]  # type: ignore[arg-type]


def _user_turns(session: Any, conversation_id: str, before: int | None) -> int:
    query = select(func.count()).where(
        MessageRecord.conversation_id == conversation_id, MessageRecord.role == "user"
    )
    if before is not None:
        query = query.where(MessageRecord.position < before)
    return int(session.scalar(query) or 0)


@job_kind(SUMMARISE_KIND, deps=MemoryDeps)
def summarise(ctx: JobContext[MemoryDeps], *, conversation_id: str, upto: int) -> dict[str, Any]:
    """Fold the turns before ``upto`` into the conversation's summary, one prompt at a time."""
    reached: int | None = None
    for n in range(MAX_CHUNKS):
        ctx.raise_if_cancelled()
        ctx.progress(n, 0, "summarising")
        step = ctx.step(
            f"chunk-{n}", ctx.deps.memory.summarise_chunk, conversation_id, upto, retries=2
        )
        if step is None:
            break
        reached = step
        if reached >= upto:
            break
    return {"conversation_id": conversation_id, "summary_upto": reached}
