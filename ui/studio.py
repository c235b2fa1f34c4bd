"""Anima studio: the Gradio UI, one tab per module, composed here.

The UI holds no business logic: every tab calls the same services the HTTP API calls. This
module only places the tabs and keeps their agent dropdowns in step, so an agent created,
imported or deleted in one tab shows up (or disappears) everywhere.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from container import Services
from ui.agents_tab import build_agents_tab
from ui.chat_tab import build_chat_tab
from ui.common import agent_choices, keep_choice
from ui.import_tab import build_import_tab
from ui.jobs_tab import build_jobs_tab
from ui.wallet_panel import build_wallet_panel

TITLE = "Anima studio"
# Gradio's own cache (uploads, exported files): clear entries older than a day, hourly.
CACHE_CLEANUP = (3600, 86400)


def build_ui(services: Services) -> gr.Blocks:
    """The studio as a ``gr.Blocks``; ``app.py`` mounts it on the FastAPI app at ``/ui``."""
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(f"## {TITLE}\nCreate role-play agents from character cards and chat.")
        wallet = build_wallet_panel(services)  # sign-in (issue 11)
        with gr.Tabs():
            with gr.Tab("Agents", id="agents", elem_id="tab-agents"):
                agents = build_agents_tab(services)
            with gr.Tab("Chat", id="chat", elem_id="tab-chat"):
                chat = build_chat_tab(services)
            with gr.Tab("Import", id="import", elem_id="tab-import"):
                imported = build_import_tab(services)
            with gr.Tab("Jobs", id="jobs", elem_id="tab-jobs"):
                jobs = build_jobs_tab(services)

        pickers = [agents.picker, chat.agent_picker]

        def refresh(*current: Any) -> list[Any]:
            choices = agent_choices(services)
            return [gr.update(choices=choices, value=keep_choice(v, choices)) for v in current]

        for event in [*agents.list_changed, *imported.list_changed]:
            event.then(refresh, inputs=pickers, outputs=pickers)
        # Choices baked in at build time go stale; every page load asks the service afresh.
        demo.load(refresh, inputs=pickers, outputs=pickers)
        demo.load(jobs.refresh, inputs=jobs.inputs, outputs=jobs.outputs)
        demo.load(wallet.refresh, outputs=wallet.outputs)
    return demo
