"""The knowledge panel's layout: bases in use, upload and re-index with progress, documents,
try a query.

Components and wiring only (``handlers.py`` holds what each control does). The panel follows
the agent selected in the editor.
"""

from __future__ import annotations

import gradio as gr

from ui.context import StudioContext
from ui.jobs.widget import job_widget
from ui.panels.knowledge import handlers
from ui.panels.knowledge.handlers import DOC_HEADERS, HIT_HEADERS
from ui.wiring import wire


def build_knowledge_panel(ctx: StudioContext) -> None:
    """Lay out the panel inside the caller's layout and wire its events."""
    gr.Markdown("Documents this agent answers from (PDF, TXT, Markdown, HTML, DOCX).")
    c: dict = {}
    with gr.Row(equal_height=True):
        c["used"] = gr.Dropdown(
            choices=[],
            value=[],
            multiselect=True,
            label="Knowledge bases this agent uses",
            elem_id="kb-used",
            scale=4,
        )
        c["new_name"] = gr.Textbox(
            label="New knowledge base", placeholder="Name", elem_id="kb-new-name", scale=2
        )
        c["create"] = gr.Button("Create and use", elem_id="kb-create", scale=1)
    with gr.Row(equal_height=True):
        c["base"] = gr.Dropdown(
            choices=[], value=None, label="Base to manage", elem_id="kb-base", scale=3
        )
        c["reindex"] = gr.Button("Re-index", elem_id="kb-reindex", scale=1)
        c["upload"] = gr.File(
            label="Upload documents",
            file_count="multiple",
            type="filepath",
            elem_id="kb-upload",
            scale=3,
        )
    c["progress"] = job_widget(ctx.services, elem_id="kb-ingest-job")
    c["docs"] = gr.Dataframe(
        headers=DOC_HEADERS, value=[], interactive=False, elem_id="kb-documents", wrap=True
    )
    with gr.Row(equal_height=True):
        c["doc_id"] = gr.Textbox(label="Document id to delete", elem_id="kb-delete-id", scale=3)
        c["delete"] = gr.Button("Delete document", variant="stop", elem_id="kb-delete", scale=1)
    with gr.Row(equal_height=True):
        c["query"] = gr.Textbox(
            label="Try a query",
            placeholder="What would the agent find?",
            elem_id="kb-query",
            scale=5,
        )
        c["search"] = gr.Button("Search", elem_id="kb-search", scale=1)
    c["hits"] = gr.Dataframe(
        headers=HIT_HEADERS, value=[], interactive=False, elem_id="kb-hits", wrap=True
    )
    c["status"] = gr.Markdown("", elem_id="kb-status")
    _wire(ctx, c)


def _wire(ctx: StudioContext, c: dict) -> None:
    services, agent, base = ctx.services, ctx.selected_agent, c["base"]
    status = {"status": c["status"]}
    docs = {"docs": c["docs"]}
    wire(
        agent.change,
        handlers.for_agent,
        services,
        inputs=[agent],
        outputs={"used": c["used"], "base": base, **docs, **status},
    )
    wire(
        c["used"].input,
        handlers.set_used,
        services,
        inputs=[agent, c["used"]],
        outputs=status,
        as_user=True,
    )
    wire(
        c["create"].click,
        handlers.create,
        services,
        inputs=[agent, c["new_name"]],
        outputs={"used": c["used"], "base": base, "new_name": c["new_name"], **status},
        as_user=True,
    )
    wire(base.change, handlers.open_base, services, inputs=[base], outputs={**docs, **status})
    wire(
        c["reindex"].click,
        handlers.reindex,
        services,
        inputs=[base],
        outputs={"job": c["progress"].job_id, **docs, **status},
        as_user=True,
    )
    wire(
        c["upload"].upload,
        handlers.add_files,
        services,
        inputs=[base, c["upload"]],
        outputs={"job": c["progress"].job_id, **docs, **status},
        as_user=True,
    )
    wire(c["progress"].finished.change, handlers.documents, services, inputs=[base], outputs=docs)
    wire(
        c["delete"].click,
        handlers.delete,
        services,
        inputs=[base, c["doc_id"]],
        outputs={**docs, **status},
        as_user=True,
    )
    wire(
        [c["search"].click, c["query"].submit],
        handlers.search,
        services,
        inputs=[agent, c["query"]],
        outputs={"hits": c["hits"], **status},
    )
