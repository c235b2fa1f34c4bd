"""What a chat reply needs from a knowledge source, owned by the side that needs it.

``agents.chat`` grounds replies through a ``Grounder`` and never imports ``knowledge``; the
knowledge package implements these Protocols (``knowledge.service.KnowledgeService``) and
imports nothing of ``agents`` but this module, so the two packages never import each other in
a circle. ``container.py`` hands the knowledge service to the chat service.

``Source`` lives here rather than in ``knowledge`` because it is part of a reply: the chat API
and the OpenAI-compatible API return it with every grounded message.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import BaseModel


class Source(BaseModel):
    """A citation shown under a reply: ``[marker]`` in the prompt and the reply."""

    marker: int
    document: str
    page: int | None
    snippet: str
    kb_id: str
    document_id: str
    chunk_id: str
    score: float


class Grounding(Protocol):
    """What retrieval found for one reply."""

    def prompt_blocks(self) -> list[str]:
        """One text block per passage, numbered from 1 (the citation markers)."""
        ...

    def sources(self, used: int | None = None) -> list[Source]:
        """The citations of the first ``used`` blocks (all of them when None)."""
        ...


G = TypeVar("G", bound=Grounding)


class Grounder(Protocol[G]):
    """Finds what a reply should be grounded on and remembers what it was.

    Generic in its own grounding type: a grounder only gets back, in ``record_trace``, what its
    own ``ground`` returned.
    """

    def ground(self, agent_id: str, query: str) -> G | None:
        """Passages for a reply of ``agent_id`` to ``query``; None when it uses no knowledge."""
        ...

    def record_trace(self, message_id: str, grounding: G, used: int | None = None) -> None:
        """Store what the stored reply ``message_id`` was grounded on (its first ``used``)."""
        ...
