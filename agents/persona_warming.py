"""Persona warming: an agent's fixed prompt prefix is computed when the agent changes, not
when its next chat starts.

Told by the agent service (an ``AgentListener``) that an agent was created, imported or
changed (a card edit, an adapter activated), a background thread builds the prompt of a
first turn as a chat would (``agents.prompt``), keeps the tokens every first turn shares
(the system message up to where the conversation's own text begins) and asks the llama.cpp
engine to compute and save them (``LlamaCppEngine.warm``). The first reply of any later
chat, after a restart too, restores that file instead of computing the card again.

A thread rather than a durable job (``core.jobs``): the work is a cache fill that any
later save redoes, that takes seconds, and whose loss at a crash costs one cold first reply;
a job row, its progress and its retries would be bookkeeping for nothing a user waits on or
follows. Agents on another engine (transformers, an OpenAI-compatible server) are skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.llm.kv_cache import KVEntry, KVStore
from agents.llm.llamacpp_backend import LlamaCppBackend
from agents.llm.pool import LLMPool
from agents.prompt import DEFAULT_USER_NAME, build_prompt
from agents.schema import CardData, ChatMessage
from agents.views import AgentView
from core.settings import Settings

log = logging.getLogger(__name__)

# Two first messages that share nothing and fire no lorebook key: their prompts agree on
# exactly the part of the prompt that does not depend on the conversation.
_PROBES = ("\u2026", "\u2014")


def fixed_prefix(
    card: CardData,
    encode: Callable[[list[ChatMessage]], list[int]],
    count_tokens: Callable[[str], int],
    context_window: int,
    max_new_tokens: int,
) -> list[int]:
    """The prompt tokens every new chat with ``card`` starts with (the user named as by
    default, no persona, no knowledge)."""
    encoded = []
    for probe in _PROBES:
        build = build_prompt(
            card,
            [ChatMessage(role="user", content=probe)],
            user_name=DEFAULT_USER_NAME,
            count_tokens=count_tokens,
            context_window=context_window,
            max_new_tokens=max_new_tokens,
        )
        encoded.append(encode(build.messages))
    first, second = encoded
    n = 0
    while n < min(len(first), len(second)) and first[n] == second[n]:
        n += 1
    return first[:n]


class PersonaWarmer:
    """Warms agents on a background thread; deletes their files when they go."""

    def __init__(self, settings: Settings, agents: Any, pool: LLMPool) -> None:
        self.settings = settings
        self.agents = agents
        self.pool = pool
        llm = settings.llm
        # Without preloading the model loads on first use: warming would load it early.
        self.enabled = llm.persona_warming and llm.backend == "local" and llm.preload
        self._pending: dict[str, None] = {}  # agent ids, oldest first, each once
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    # ----- AgentListener -------------------------------------------------------------------
    def agent_created(self, agent: AgentView) -> None:
        self.schedule(agent.id)

    def card_changed(self, agent: AgentView) -> None:
        self.schedule(agent.id)

    def agent_deleted(self, agent_id: str) -> None:
        removed = self.store.delete_agent(agent_id)
        if removed:
            log.info("persona warming: %d file(s) of agent %s deleted", removed, agent_id)

    def adapter_deleted(self, adapter_name: str) -> None:
        """An adapter version is gone: so is every prefix computed under it."""
        self.store.delete_adapter(str(self.settings.adapters_dir / adapter_name))

    @property
    def store(self) -> KVStore:
        return KVStore.for_folder(self.settings.kv_cache_dir, self.settings.llm.kv_cache_mb)

    # ----- the background thread ---------------------------------------------------------
    def schedule(self, agent_id: str) -> None:
        if not self.enabled:
            return
        with self._cond:
            if self._closed:
                return
            self._pending.pop(agent_id, None)
            self._pending[agent_id] = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="persona-warming", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Whether every scheduled agent was warmed (or skipped) within ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                agent_id = next(iter(self._pending))
                del self._pending[agent_id]
                self._busy = True
            try:
                self.warm_agent(agent_id)
            except Exception as exc:  # a deleted agent, a busy engine: the next save retries
                log.warning("persona warming of agent %s failed: %s", agent_id, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    # ----- the work ----------------------------------------------------------------------
    def warm_agent(self, agent_id: str) -> KVEntry | None:
        """Compute and save the agent's fixed prefix now (``None``: not on the llama.cpp
        engine, or warming is off)."""
        agent, card = self.agents.get_with_card(agent_id)
        scheduled = self.pool.get(agent.model, agent.adapter)
        backend = getattr(scheduled, "backend", scheduled)
        if not isinstance(backend, LlamaCppBackend):
            return None
        if agent.model and not backend.engine.is_loaded:
            return None  # loading another base model could push out the one in use
        backend.load()
        if backend.fallback is not None:
            return None
        engine = backend.engine
        prefix = fixed_prefix(
            card.data,
            engine.encode_chat,
            engine.count_tokens,
            backend.context_window,
            agent.generation.max_new_tokens,
        )
        adapter: Path | None = backend.adapter_path
        return engine.warm(adapter, prefix, agent_id)
