"""Where the agent's lorebook is edited: the editor's Lorebook tab.

The full entries editor lives in its own panel; until it is mounted here, the tab says how
many entries the agent's card carries (imported lorebooks are kept and used in chats), so a
creator can see that nothing was lost.
"""

from __future__ import annotations

import gradio as gr

from container import Services
from core.errors import AnimaError
from ui.context import StudioContext
from ui.wiring import wire


def lorebook_summary(services: Services, agent_id: str | None) -> dict[str, str]:
    if not agent_id:
        return {"summary": "Save the agent first; then its lorebook is edited here."}
    try:
        book = services.agents.get_agent(agent_id).data.get("character_book") or {}
    except AnimaError as exc:
        return {"summary": exc.message}
    count = len(book.get("entries") or [])
    entries = "1 lorebook entry" if count == 1 else f"{count} lorebook entries"
    return {
        "summary": f"This card carries **{entries}**; chats use them. "
        "The lorebook editor is coming to this tab."
    }


def build_lorebook_slot(ctx: StudioContext, picker: gr.Dropdown) -> None:
    """Lay out the tab's content; it follows the agent picked in the editor."""
    summary = gr.Markdown(lorebook_summary(ctx.services, None)["summary"], elem_id="agent-lorebook")
    wire(
        ctx.selected_agent.change,
        lorebook_summary,
        ctx.services,
        inputs=[ctx.selected_agent],
        outputs={"summary": summary},
    )
