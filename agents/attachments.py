"""The seam through which an agent's own resources travel with its card and go with it.

Some things belong to an agent without being card fields: its LoRA adapter now, its knowledge
files or voice profile later. They must leave with a CHARX export, come back with the import,
and be removed when the agent is deleted. ``AgentService`` knows none of them: each registers
an ``AgentAttachment`` (``container.py`` wires them) and the service calls it at those moments.
"""

from __future__ import annotations

from typing import Protocol


class AgentAttachment(Protocol):
    """Files of one kind that belong to an agent (e.g. its active LoRA adapter)."""

    def export_files(self, agent_id: str) -> dict[str, bytes]:
        """Archive path -> content to add to the agent's CHARX export (``{}``: nothing)."""
        ...

    def take_import(self, files: dict[str, bytes]) -> object | None:
        """Remove this attachment's entries from an imported CHARX's files and check them.

        Runs before anything is stored; raise ``CardFormatError`` for bad content. Returns
        what ``attach`` needs, or None when the archive holds nothing of this kind.
        """
        ...

    def attach(self, agent_id: str, staged: object) -> None:
        """Store what ``take_import`` returned for the newly imported agent."""
        ...

    def agent_deleted(self, agent_id: str) -> None:
        """The agent is gone from the database: stop its work, remove its files."""
        ...
