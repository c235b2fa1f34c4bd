"""The knowledge panel of the agent editor: which bases the agent uses, upload with progress,
the documents of a base, delete, and "try a query" (what a reply would be grounded on).

Layout and handlers only; every action is a ``KnowledgeService`` call, the same the REST API
makes. Rendering of documents and hits is pure (``document_rows``, ``hit_rows``) so tests can
check it without a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from agents.chat import ConversationView
from container import Services
from core.errors import AnimaError, ValidationError
from knowledge.service import DocumentView, SearchHit, Source
from ui.common import principal_of, show_error
from ui.jobs_widget import job_widget

DOC_HEADERS = ["File", "Status", "Chunks", "Pages", "Size (KB)", "Id"]
HIT_HEADERS = ["#", "Document", "Page", "Score", "Text"]


def document_rows(docs: Sequence[DocumentView]) -> list[list[Any]]:
    return [
        [
            d.filename,
            d.status if not d.error else f"{d.status}: {d.error}",
            d.chunk_count,
            d.pages or "",
            round(d.size_bytes / 1024, 1),
            d.id,
        ]
        for d in docs
    ]


def hit_rows(hits: Sequence[SearchHit]) -> list[list[Any]]:
    return [
        [n, h.document, h.page or "", round(h.score, 3), h.text]
        for n, h in enumerate(hits, start=1)
    ]


def sources_markdown(sources: Sequence[Source]) -> str:
    """The citations shown under a grounded reply: marker, document, page and snippet."""
    lines = []
    for s in sources:
        where = f"{s.document}, page {s.page}" if s.page else s.document
        lines.append(f"**[{s.marker}]** {where}: {s.snippet}")
    return "\n\n".join(lines)


def trace_sources(services: Services, conv: ConversationView) -> dict[str, str]:
    """Sources Markdown per grounded reply of a stored conversation (from its traces)."""
    ids = [m.id for m in conv.messages if m.role == "assistant"]
    found = services.knowledge.traces(ids)
    return {
        message_id: sources_markdown([Source.model_validate(h) for h in trace.hits])
        for message_id, trace in found.items()
        if trace.hits
    }


def build_knowledge_panel(services: Services, agent_picker: gr.Dropdown) -> None:
    """Lay out the panel inside the caller's layout; it follows ``agent_picker``."""
    knowledge = services.knowledge

    def base_choices() -> list[tuple[str, str]]:
        return [(f"{b.name} · {b.id[:8]}", b.id) for b in knowledge.list_bases()]

    gr.Markdown("Documents this agent answers from (PDF, TXT, Markdown, HTML, DOCX).")
    with gr.Row(equal_height=True):
        used = gr.Dropdown(
            choices=[],
            value=[],
            multiselect=True,
            label="Knowledge bases this agent uses",
            elem_id="kb-used",
            scale=4,
        )
        new_name = gr.Textbox(
            label="New knowledge base", placeholder="Name", elem_id="kb-new-name", scale=2
        )
        create_btn = gr.Button("Create and use", elem_id="kb-create", scale=1)
    with gr.Row(equal_height=True):
        base = gr.Dropdown(
            choices=[], value=None, label="Base to manage", elem_id="kb-base", scale=3
        )
        upload = gr.File(
            label="Upload documents",
            file_count="multiple",
            type="filepath",
            elem_id="kb-upload",
            scale=3,
        )
    progress = job_widget(services, elem_id="kb-ingest-job")
    docs = gr.Dataframe(
        headers=DOC_HEADERS, value=[], interactive=False, elem_id="kb-documents", wrap=True
    )
    with gr.Row(equal_height=True):
        doc_id = gr.Textbox(label="Document id to delete", elem_id="kb-delete-id", scale=3)
        delete_btn = gr.Button("Delete document", variant="stop", elem_id="kb-delete", scale=1)
    with gr.Row(equal_height=True):
        query = gr.Textbox(
            label="Try a query",
            placeholder="What would the agent find?",
            elem_id="kb-query",
            scale=5,
        )
        search_btn = gr.Button("Search", elem_id="kb-search", scale=1)
    hits = gr.Dataframe(
        headers=HIT_HEADERS, value=[], interactive=False, elem_id="kb-hits", wrap=True
    )
    status = gr.Markdown("", elem_id="kb-status")

    def for_agent(agent_id: str | None) -> list[Any]:
        choices = base_choices()
        if not agent_id:
            return [
                gr.update(choices=choices, value=[]),
                gr.update(choices=choices, value=None),
                [],
                "",
            ]
        try:
            mine = [b.id for b in knowledge.bases_for_agent(agent_id)]
        except AnimaError as exc:
            return [gr.skip(), gr.skip(), gr.skip(), show_error(exc)]
        first = mine[0] if mine else None
        return [
            gr.update(choices=choices, value=mine),
            gr.update(choices=choices, value=first),
            _docs(first),
            "",
        ]

    def _docs(kb_id: str | None) -> list[list[Any]]:
        return document_rows(knowledge.list_documents(kb_id)) if kb_id else []

    def set_used(agent_id: str | None, wanted: list[str] | None, request: gr.Request) -> str:
        try:
            if not agent_id:
                raise ValidationError("pick or save an agent first")
            principal = principal_of(services, request)
            have = {b.id for b in knowledge.bases_for_agent(agent_id)}
            want = set(wanted or [])
            for kb_id in want - have:
                knowledge.attach(agent_id, kb_id, principal=principal)
            for kb_id in have - want:
                knowledge.detach(agent_id, kb_id, principal=principal)
        except AnimaError as exc:
            return show_error(exc)
        return f"This agent now uses {len(want)} knowledge base(s)."

    def create(agent_id: str | None, name: str, request: gr.Request) -> list[Any]:
        try:
            if not agent_id:
                raise ValidationError("pick or save an agent first")
            principal = principal_of(services, request)
            kb = knowledge.create_base_for_agent(agent_id, name, principal=principal)
        except AnimaError as exc:
            return [gr.skip(), gr.skip(), gr.skip(), show_error(exc)]
        choices = base_choices()
        mine = [b.id for b in knowledge.bases_for_agent(agent_id)]
        return [
            gr.update(choices=choices, value=mine),
            gr.update(choices=choices, value=kb.id),
            "",
            f"Created **{kb.name}**; upload documents into it below.",
        ]

    def add_files(kb_id: str | None, paths: list[str] | None, request: gr.Request) -> list[Any]:
        notes, last_job = [], gr.skip()
        if not kb_id:
            return [gr.skip(), gr.skip(), show_error("pick a knowledge base first")]
        principal = principal_of(services, request)
        for path in paths or []:
            file = Path(path)
            try:
                result = knowledge.add_document(
                    kb_id, file.name, file.read_bytes(), principal=principal
                )
            except AnimaError as exc:
                notes.append(show_error(exc))
                continue
            if result.duplicate:
                notes.append(f"{file.name}: already in this base, nothing to do.")
            elif result.job is not None:
                last_job = result.job.id
                notes.append(f"{file.name}: indexing.")
        return [last_job, _docs(kb_id), "\n\n".join(notes)]

    def delete(kb_id: str | None, document_id: str, request: gr.Request) -> list[Any]:
        try:
            if not kb_id or not (document_id or "").strip():
                raise ValidationError("pick a base and paste the id of a document")
            principal = principal_of(services, request)
            knowledge.delete_document(kb_id, document_id.strip(), principal=principal)
        except AnimaError as exc:
            return [gr.skip(), show_error(exc)]
        return [_docs(kb_id), "Deleted."]

    def search(agent_id: str | None, text: str) -> list[Any]:
        try:
            if not agent_id:
                raise ValidationError("pick an agent first")
            found = knowledge.search_for_agent(agent_id, text or "")
        except AnimaError as exc:
            return [gr.skip(), show_error(exc)]
        note = "" if found else "Nothing relevant found (nothing above the score floor)."
        return [hit_rows(found), note]

    agent_picker.change(for_agent, inputs=[agent_picker], outputs=[used, base, docs, status])
    used.input(set_used, inputs=[agent_picker, used], outputs=[status])
    create_btn.click(
        create, inputs=[agent_picker, new_name], outputs=[used, base, new_name, status]
    )
    base.change(lambda kb_id: _docs(kb_id), inputs=[base], outputs=[docs])
    upload.upload(add_files, inputs=[base, upload], outputs=[progress.job_id, docs, status])
    progress.finished.change(lambda kb_id: _docs(kb_id), inputs=[base], outputs=[docs])
    delete_btn.click(delete, inputs=[base, doc_id], outputs=[docs, status])
    gr.on(
        [search_btn.click, query.submit],
        search,
        inputs=[agent_picker, query],
        outputs=[hits, status],
    )
