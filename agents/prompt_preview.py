"""The prompt inspector: the exact prompt a reply would read, part by part, and a test chat
with an unsaved draft of the card.

A creator tunes a card blind unless they can see what the model sees. So the preview does not
re-assemble a prompt its own way: it gathers the same inputs a reply gathers (the history that
``agents.conversations.recent_history`` loads, the conversation's persona, note, summary and
pins from ``MemoryService.prompt_context``, the knowledge ``ChatService._ground`` retrieves)
and calls the one builder, ``agents.prompt.build_prompt``, whose ``PromptTrace`` says what it
decided. Each part is priced with the model's own tokenizer (the backend's ``count_tokens``)
against the backend's context window, and the rendered text is the model's chat template
applied to the very messages a reply would send (where the backend can render it: a remote
server applies its template itself, so there it is ``None``).

What the budget left out is reported too: lorebook entries that matched but did not fit the
book's token budget (found by activating the same book with no budget, with the same code),
knowledge excerpts past the ones that fit, example dialogues that gave way to the history.

A draft is the stored card with the editor's unsaved fields laid over it; only the agent's
owner may preview or test-chat one (anyone who may chat with an agent may preview it as
stored). The test chat streams through ``ChatService._stream``, the path every reply takes
(the scheduler's fair queue included), and stores nothing: no conversation, no message.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from agents.chat import MAX_MESSAGE_CHARS, ChatService
from agents.conversations import recent_history
from agents.grounding import Grounding
from agents.llm.base import LLMBackend
from agents.llm.scheduler import tenant_scope
from agents.lorebook import (
    LoreHit,
    _compile_key,
    activate,
    scan_depth_needed,
    split_by_position,
    with_books,
)
from agents.prompt import (
    DEFAULT_USER_NAME,
    MESSAGE_OVERHEAD_TOKENS,
    PromptBuild,
    build_prompt,
    char_name,
    greetings,
    render_macros,
)
from agents.prompt_parts import ChatExtras
from agents.reply_stream import ReplyStream
from agents.schema import CardData, ChatMessage, GenerationSettings
from agents.service import AgentService, AgentView
from core.errors import ValidationError
from core.principal import Principal

# A test chat is a short exchange, not a stored conversation.
MAX_TEST_HISTORY = 40
# Shown for a constant lorebook entry instead of a key.
CONSTANT = "(constant)"
DEFAULT_SCAN_DEPTH = 4  # as ``agents.lorebook.activate``'s default

LABELS = {
    "system": "System prompt",
    "lore": "Lorebook entry",
    "description": "Description",
    "personality": "Personality",
    "scenario": "Scenario",
    "persona": "Persona",
    "summary": "Summary",
    "extra_system": "Extra system text",
    "knowledge": "Knowledge",
    "example": "Example dialogue",
    "greeting": "Greeting",
    "history": "History",
    "message": "Your message",
    "authors_note": "Author's note",
    "post_history": "Post-history instructions",
}


class PreviewPart(BaseModel):
    """One piece of the prompt. ``message``: the index of the message it sits in."""

    kind: str
    label: str
    message: int
    role: str
    text: str
    tokens: int
    pinned: bool = False
    key: str | None = None  # a lorebook entry: the key that fired it


class LoreItem(BaseModel):
    name: str
    keys: list[str]
    key: str | None = None
    tokens: int
    content: str


class KnowledgeItem(BaseModel):
    marker: int
    document: str
    page: int | None = None
    text: str
    tokens: int


class PromptPreview(BaseModel):
    """What the model will read for one reply, and what gave way to fit its window."""

    agent_id: str
    model: str
    context_window: int
    max_new_tokens: int
    prompt_tokens: int  # the rendered prompt in the model's tokenizer (else the estimate)
    budgeted_tokens: int  # what the builder priced the prompt at when it fitted it
    parts: list[PreviewPart]
    messages: list[ChatMessage]
    rendered: str | None  # the chat template applied; None where the server applies it
    lore_fired: list[LoreItem]
    lore_left_out: list[LoreItem]
    knowledge_used: list[KnowledgeItem]
    knowledge_left_out: list[KnowledgeItem]
    examples_left_out: int
    dropped_history: int
    truncated_last_turn: bool


class PreviewRequest(BaseModel):
    """``POST /api/agents/{id}/prompt-preview``: a sample message, optionally in one of the
    caller's conversations with the agent, optionally for unsaved card fields."""

    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    conversation_id: str | None = Field(default=None, max_length=64)
    draft: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Inputs:
    """Everything ``build_prompt`` is called with for one reply (as ``ChatService._stream``)."""

    agent: AgentView
    card: CardData
    backend: LLMBackend
    count: Callable[[str], int]
    params: GenerationSettings
    user_name: str
    history: list[ChatMessage]
    extras: ChatExtras | None
    grounding: Grounding | None

    def build(self) -> PromptBuild:
        return build_prompt(
            self.card,
            self.history,
            user_name=self.user_name,
            count_tokens=self.count,
            context_window=self.backend.context_window,
            max_new_tokens=self.params.max_new_tokens,
            extra_system=None,
            knowledge=self.grounding.prompt_blocks() if self.grounding else (),
            extras=self.extras,
        )


class PromptInspector:
    """Prompt previews and draft test chats, over the chat service's own reply path."""

    def __init__(self, agents: AgentService, chat: ChatService) -> None:
        self.agents = agents
        self.chat = chat

    def preview(
        self,
        agent_id: str,
        message: str,
        *,
        conversation_id: str | None = None,
        draft: dict[str, Any] | None = None,
        generation: dict[str, Any] | None = None,
        principal: Principal,
    ) -> PromptPreview:
        """The prompt a reply to ``message`` would read now (see the module docstring)."""
        message = _check_message(message)
        agent, card = self._card(agent_id, draft, principal)
        if conversation_id:
            self._check_conversation(agent_id, conversation_id, principal)
            inputs = self._in_conversation(agent, card, conversation_id, message, generation)
        else:
            history = [
                *_opening(card, DEFAULT_USER_NAME),
                ChatMessage(role="user", content=message),
            ]
            inputs = self._inputs(agent, card, generation, DEFAULT_USER_NAME, history, None)
        return _preview(inputs, inputs.build())

    def test_chat(
        self,
        agent_id: str,
        history: Sequence[ChatMessage],
        message: str,
        *,
        draft: dict[str, Any] | None = None,
        generation: dict[str, Any] | None = None,
        principal: Principal,
    ) -> ReplyStream:
        """Stream a reply of the (draft) card to ``message`` after ``history`` (the test chat's
        own turns, oldest first; the greeting opens it when empty). Nothing is stored."""
        message = _check_message(message)
        if len(history) > MAX_TEST_HISTORY:
            raise ValidationError(
                f"a test chat holds at most {MAX_TEST_HISTORY} messages; clear it to go on"
            )
        for earlier in history:
            if earlier.role not in ("user", "assistant"):
                raise ValidationError("a test chat's history holds user and assistant turns only")
            _check_message(earlier.content, allow_empty=True)
        agent, card = self._card(agent_id, draft, principal)
        turns = list(history) or _opening(card, DEFAULT_USER_NAME)
        turns.append(ChatMessage(role="user", content=message))
        inputs = self._inputs(agent, card, generation, DEFAULT_USER_NAME, turns, None)
        with tenant_scope(principal):  # queued in the caller's own lane, as every reply
            reply = self.chat._stream(
                inputs.backend,
                inputs.card,
                inputs.history,
                inputs.params,
                inputs.user_name,
                None,
                lambda _text: None,  # a test chat keeps nothing
                inputs.grounding,
                count_tokens=inputs.count,
            )
        return self.chat._metered(reply, principal, agent_id, "chat.test")

    def test_opening(
        self, agent_id: str, *, draft: dict[str, Any] | None = None, principal: Principal
    ) -> list[ChatMessage]:
        """How a test chat of the (draft) card opens: its default greeting, as a new chat."""
        _agent, card = self._card(agent_id, draft, principal)
        return _opening(card, DEFAULT_USER_NAME)

    # ----- gathering what a reply gathers -------------------------------------------------
    def _card(
        self, agent_id: str, draft: dict[str, Any] | None, principal: Principal
    ) -> tuple[AgentView, CardData]:
        """The agent and its card, the draft's fields laid over it (the owner's only)."""
        self.agents.require_visible(agent_id, principal=principal)
        agent, card = self.agents.get_with_card(agent_id)
        if draft:
            self.agents.owner_check.require_owner(principal, agent_id)
            unknown = sorted(set(draft) - set(CardData.model_fields))
            if unknown:
                raise ValidationError(f"not card fields: {', '.join(unknown)}")
            data = self.agents._validate_data({**card.data.dump(), **draft})
            card = card.model_copy(update={"data": data})
        # Books attached to the agent take part in its prompt as in a reply.
        books = self.chat.lore.books_for(agent_id) if self.chat.lore is not None else []
        return agent, with_books(card, books).data

    def _inputs(
        self,
        agent: AgentView,
        card: CardData,
        generation: dict[str, Any] | None,
        user_name: str,
        history: list[ChatMessage],
        extras: ChatExtras | None,
    ) -> _Inputs:
        backend = self.chat.llm.get(agent.model, agent.adapter)
        count = functools.lru_cache(maxsize=4096)(backend.count_tokens)
        params = self.chat._params(agent, generation)
        grounding = self.chat._ground(agent.id, history)
        return _Inputs(agent, card, backend, count, params, user_name, history, extras, grounding)

    def _in_conversation(
        self,
        agent: AgentView,
        card: CardData,
        conversation_id: str,
        message: str,
        generation: dict[str, Any] | None,
    ) -> _Inputs:
        """As ``ChatService._reply`` after ``send`` stored ``message``: the stored history, the
        conversation's extras, then the message as the newest turn."""
        backend = self.chat.llm.get(agent.model, agent.adapter)
        count = functools.lru_cache(maxsize=4096)(backend.count_tokens)
        user_name, history = recent_history(
            self.chat.db,
            conversation_id,
            None,
            budget=backend.context_window,
            count=count,
            at_least=scan_depth_needed(card.character_book),
        )
        extras: ChatExtras | None = None
        if self.chat.memory is not None:
            user_name, history, extras = self.chat.memory.prompt_context(
                conversation_id, None, user_name, history
            )
            # ``send`` stores the message before the reply reads the turns: count it too.
            extras = dataclasses.replace(extras, user_turns=extras.user_turns + 1)
        history = [*history, ChatMessage(role="user", content=message)]
        return self._inputs(agent, card, generation, user_name, history, extras)

    def _check_conversation(
        self, agent_id: str, conversation_id: str, principal: Principal
    ) -> None:
        """The caller may read the conversation, and it is a 1:1 chat with this agent."""
        with self.chat.db.session() as s:
            row = self.chat._row(s, conversation_id, principal, write=False)
            if row.agent_id != agent_id or row.members:
                raise ValidationError(
                    "that conversation is not a one-to-one chat with this agent; pick one of "
                    "its own chats"
                )


def _check_message(text: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(text, str) or (not allow_empty and not text.strip()):
        raise ValidationError("message is empty: type a sample message to preview")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValidationError(f"message is longer than {MAX_MESSAGE_CHARS} characters")
    return text


def _opening(card: CardData, user_name: str) -> list[ChatMessage]:
    """A new chat's first message: the card's default greeting (when it has one)."""
    found = greetings(card, user_name)
    return [ChatMessage(role="assistant", content=found[0])] if found else []


# ----- turning a build into parts ---------------------------------------------------------
def _preview(inputs: _Inputs, build: PromptBuild) -> PromptPreview:
    count, trace = inputs.count, build.trace
    render = _renderer(inputs.card, inputs.user_name)
    keys = _LoreKeys(inputs.card, [m.content for m in inputs.history], render, build.lore_hits)
    ordered = split_by_position(build.lore_hits)
    lore = iter([*ordered["before_char"], *ordered["after_char"]])
    parts: list[PreviewPart] = []
    for kind, text in trace.system_parts:
        hit = next(lore) if kind == "lore" else None
        parts.append(
            PreviewPart(
                kind=kind,
                label=_lore_name(hit) if hit else LABELS.get(kind, kind),
                message=0,
                role="system",
                text=text,
                tokens=count(text),
                key=keys.fired(hit) if hit else None,
            )
        )
    parts += _message_parts(inputs, build)
    blocks = inputs.grounding.prompt_blocks() if inputs.grounding else []
    sources = inputs.grounding.sources() if inputs.grounding else []
    knowledge = [
        KnowledgeItem(
            marker=s.marker, document=s.document, page=s.page, text=block, tokens=count(block)
        )
        for s, block in zip(sources, blocks, strict=False)
    ]
    rendered = _rendered(inputs.backend, build.messages)
    return PromptPreview(
        agent_id=inputs.agent.id,
        model=inputs.backend.model_name,
        context_window=inputs.backend.context_window,
        max_new_tokens=inputs.params.max_new_tokens,
        prompt_tokens=count(rendered) if rendered is not None else build.prompt_tokens,
        budgeted_tokens=build.prompt_tokens,
        parts=parts,
        messages=build.messages,
        rendered=rendered,
        lore_fired=[_lore_item(h, keys.fired(h)) for h in build.lore_hits],
        lore_left_out=[_lore_item(h, keys.fired(h)) for h in keys.left_out(count)],
        knowledge_used=knowledge[: build.knowledge_used],
        knowledge_left_out=knowledge[build.knowledge_used :],
        examples_left_out=len(trace.examples_left_out),
        dropped_history=build.dropped_history,
        truncated_last_turn=build.truncated_last_turn,
    )


def _message_parts(inputs: _Inputs, build: PromptBuild) -> list[PreviewPart]:
    """One part per message after the system one: history, note, post-history text."""
    trace, history = build.trace, inputs.history
    pinned = inputs.extras.pinned if inputs.extras else frozenset()
    users = [i for i, m in enumerate(history) if m.role == "user"]
    newest = users[-1] if users else None
    parts: list[PreviewPart] = []
    for number, (message, source) in enumerate(
        zip(build.messages[1:], trace.history_sources, strict=True), start=1
    ):
        if source is None:
            is_post = bool(trace.post) and number == len(build.messages) - 1
            kind = "post_history" if is_post else "authors_note"
        elif source == newest:
            kind = "message"
        elif message.role == "assistant" and (newest is None or source < users[0]):
            kind = "greeting"
        else:
            kind = "history"
        parts.append(
            PreviewPart(
                kind=kind,
                label=LABELS[kind] if kind != "history" else f"History ({message.role})",
                message=number,
                role=message.role,
                text=message.content,
                tokens=inputs.count(message.content) + MESSAGE_OVERHEAD_TOKENS,
                pinned=source is not None and source in pinned,
            )
        )
    return parts


def _rendered(backend: LLMBackend, messages: list[ChatMessage]) -> str | None:
    """The prompt text after the model's chat template, where this backend applies one."""
    render = getattr(backend, "render_chat", None)
    return str(render(messages)) if callable(render) else None


def _renderer(card: CardData, user_name: str) -> Callable[[str], str]:
    char = char_name(card)
    return lambda text: render_macros(text, char, user_name or DEFAULT_USER_NAME)


def _lore_name(hit: LoreHit) -> str:
    entry = hit.entry
    name = entry.name or entry.comment or ", ".join(k for k in entry.keys if k.strip())
    return f"Lorebook: {name}" if name else "Lorebook entry"


def _lore_item(hit: LoreHit, key: str | None) -> LoreItem:
    return LoreItem(
        name=_lore_name(hit).removeprefix("Lorebook: "),
        keys=list(hit.entry.keys),
        key=key,
        tokens=hit.tokens,
        content=hit.content,
    )


class _LoreKeys:
    """Which key fired each entry, and which matching entries the budget left out.

    Both questions are answered with ``agents.lorebook``'s own matching (its key compiler,
    its ``activate``), so the inspector cannot disagree with the reply about what fired.
    """

    def __init__(
        self,
        card: CardData,
        history: list[str],
        render: Callable[[str], str],
        hits: list[LoreHit],
    ) -> None:
        self.book = card.character_book
        self.history = history
        self.render = render
        self.hits = hits
        # What other entries put in the scan text (recursion), for entries no chat key fired.
        self.recursion = "\n".join(h.content for h in hits)

    def fired(self, hit: LoreHit) -> str | None:
        entry = hit.entry
        text = self._chat_text(entry)
        for key in entry.keys:
            if key.strip() and self._matcher(entry, key)(text):
                return key
        if entry.constant:
            return CONSTANT
        for key in entry.keys:
            if key.strip() and self._matcher(entry, key)(self.recursion):
                return f"{key} (in another entry)"
        return None

    def left_out(self, count: Callable[[str], int]) -> list[LoreHit]:
        """Entries that would fire with no token budget but did not fire within it."""
        if self.book is None or not self.book.entries:
            return []
        unbounded = self.book.model_copy(update={"token_budget": 10**9})
        every = activate(unbounded, self.history, count, render=self.render)
        fired = {id(h.entry) for h in self.hits}
        return [h for h in every if id(h.entry) not in fired]

    def _chat_text(self, entry: Any) -> str:
        book = self.book
        depth = book.scan_depth if book and book.scan_depth is not None else DEFAULT_SCAN_DEPTH
        own = entry.extensions.get("scan_depth")
        if isinstance(own, int) and not isinstance(own, bool):
            depth = own
        return "\n".join(self.history[-depth:]) if depth > 0 else ""

    def _matcher(self, entry: Any, key: str) -> Callable[[str], bool]:
        ext = entry.extensions
        case = entry.case_sensitive
        return _compile_key(
            self.render(key),
            case_sensitive=case if case is not None else bool(ext.get("case_sensitive")),
            whole_words=bool(ext.get("match_whole_words")),
            use_regex=bool(entry.use_regex),
        )


__all__ = [
    "KnowledgeItem",
    "LoreItem",
    "PreviewPart",
    "PreviewRequest",
    "PromptInspector",
    "PromptPreview",
]
