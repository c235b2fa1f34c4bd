"""Text completion (``/v1/completions``): the client's prompt, continued as is.

Clients in this mode (SillyTavern's text-completion sources, older tools) build the whole
prompt themselves, chat template and persona included; so the agent's persona, lorebook and
knowledge are *not* added here. The agent still chooses the model, its adapter and its
generation settings, and the request may override those as in chat.
"""

from __future__ import annotations

from typing import Any

from agents.chat import ReplyStream
from agents.llm.base import StreamResult
from agents.llm.options import with_options
from agents.llm.pool import LLMPool
from agents.service import AgentService, merge_generation


class TextCompletionService:
    """Stateless: nothing a completion sends is stored."""

    def __init__(self, agents: AgentService, llm: LLMPool) -> None:
        self.agents = agents
        self.llm = llm

    def complete(
        self,
        agent_id: str,
        prompt: str,
        generation: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> ReplyStream:
        """Stream the continuation of ``prompt``; 400 where the backend cannot do it."""
        agent = self.agents.get_agent(agent_id)
        params = agent.generation
        if generation:
            params = merge_generation(params.model_dump(), generation)
        backend = self.llm.get(agent.model, agent.adapter)
        request = with_options(params, {**(options or {}), "raw_prompt": prompt}, backend)
        result = StreamResult()
        return ReplyStream(backend.stream([], request, result), result, lambda _text: None)
