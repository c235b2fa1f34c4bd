"""The knowledge panel's handlers: which bases the agent uses, uploads, the documents of a
base, re-indexing it, delete, and "try a query" (what a reply would be grounded on).

Every action is a ``KnowledgeService`` call, the same the REST API makes. Rendering of
documents, hits and sources is pure (``document_rows``, ``hit_rows``, ``sources_markdown``),
shared with the chat screen, and checked by tests without a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from agents.chat import ConversationView
from container import Services
from core.errors import AnimaError, ValidationError
from core.principal import Principal
from knowledge.service import DocumentView, SearchHit, Source
from ui.common import show_error
from ui.wiring import Updates

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


def base_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{b.name} · {b.id[:8]}", b.id) for b in services.knowledge.list_bases()]


def documents(services: Services, kb_id: str | None) -> Updates:
    rows = document_rows(services.knowledge.list_documents(kb_id)) if kb_id else []
    return {"docs": rows}


def open_base(services: Services, kb_id: str | None) -> Updates:
    """The base's documents, and a note when some were indexed with an older chunking (the
    status line is left as it is otherwise: it may say what was just done)."""
    if not kb_id:
        return {"docs": []}
    try:
        stale = services.knowledge.get_base(kb_id).stale_documents
    except AnimaError as exc:
        return {"docs": [], "status": show_error(exc)}
    if not stale:
        return documents(services, kb_id)
    note = (
        f"{stale} document(s) of this base were indexed with an older chunking: "
        "**Re-index** re-cuts them in the background (searches keep working meanwhile)."
    )
    return {**documents(services, kb_id), "status": note}


def reindex(services: Services, kb_id: str | None, *, principal: Principal) -> Updates:
    """Start (or follow) the base's re-index job; its progress goes to the progress bar."""
    try:
        if not kb_id:
            raise ValidationError("pick a knowledge base first")
        stale = services.knowledge.get_base(kb_id).stale_documents
        job = services.knowledge.reindex_base(kb_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    note = (
        f"Re-indexing {stale} document(s); the old index answers until it is done."
        if stale
        else "Every document already uses the current chunking; nothing to re-index."
    )
    return {"job": job.id, **documents(services, kb_id), "status": note}


def for_agent(services: Services, agent_id: str | None) -> Updates:
    """The bases the agent uses, the first of them opened for managing."""
    choices = base_choices(services)
    if not agent_id:
        return {
            "used": gr.update(choices=choices, value=[]),
            "base": gr.update(choices=choices, value=None),
            "docs": [],
            "status": "",
        }
    try:
        mine = [b.id for b in services.knowledge.bases_for_agent(agent_id)]
    except AnimaError as exc:
        return {"status": show_error(exc)}
    first = mine[0] if mine else None
    return {
        "used": gr.update(choices=choices, value=mine),
        "base": gr.update(choices=choices, value=first),
        **documents(services, first),
        "status": "",
    }


def set_used(
    services: Services, agent_id: str | None, wanted: list[str] | None, *, principal: Principal
) -> Updates:
    """Attach the bases the user added to the list, detach those removed."""
    knowledge = services.knowledge
    try:
        if not agent_id:
            raise ValidationError("pick or save an agent first")
        have = {b.id for b in knowledge.bases_for_agent(agent_id)}
        want = set(wanted or [])
        for kb_id in want - have:
            knowledge.attach(agent_id, kb_id, principal=principal)
        for kb_id in have - want:
            knowledge.detach(agent_id, kb_id, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {"status": f"This agent now uses {len(want)} knowledge base(s)."}


def create(services: Services, agent_id: str | None, name: str, *, principal: Principal) -> Updates:
    """A new base, attached to the agent at once."""
    knowledge = services.knowledge
    try:
        if not agent_id:
            raise ValidationError("pick or save an agent first")
        kb = knowledge.create_base_for_agent(agent_id, name, principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    choices = base_choices(services)
    mine = [b.id for b in knowledge.bases_for_agent(agent_id)]
    return {
        "used": gr.update(choices=choices, value=mine),
        "base": gr.update(choices=choices, value=kb.id),
        "new_name": "",
        "status": f"Created **{kb.name}**; upload documents into it below.",
    }


def add_files(
    services: Services, kb_id: str | None, paths: list[str] | None, *, principal: Principal
) -> Updates:
    """Upload each file; the last indexing job goes to the progress bar."""
    if not kb_id:
        return {"status": show_error("pick a knowledge base first")}
    notes: list[str] = []
    updates: Updates = {}
    for path in paths or []:
        file = Path(path)
        try:
            result = services.knowledge.add_document(
                kb_id, file.name, file.read_bytes(), principal=principal
            )
        except AnimaError as exc:
            notes.append(show_error(exc))
            continue
        if result.duplicate:
            notes.append(f"{file.name}: already in this base, nothing to do.")
        elif result.job is not None:
            updates["job"] = result.job.id
            notes.append(f"{file.name}: indexing.")
    return {**updates, **documents(services, kb_id), "status": "\n\n".join(notes)}


def delete(
    services: Services, kb_id: str | None, document_id: str, *, principal: Principal
) -> Updates:
    try:
        if not kb_id or not (document_id or "").strip():
            raise ValidationError("pick a base and paste the id of a document")
        services.knowledge.delete_document(kb_id, document_id.strip(), principal=principal)
    except AnimaError as exc:
        return {"status": show_error(exc)}
    return {**documents(services, kb_id), "status": "Deleted."}


def search(services: Services, agent_id: str | None, text: str) -> Updates:
    """What a reply of the agent would be grounded on for ``text``."""
    try:
        if not agent_id:
            raise ValidationError("pick an agent first")
        found = services.knowledge.search_for_agent(agent_id, text or "")
    except AnimaError as exc:
        return {"status": show_error(exc)}
    note = "" if found else "Nothing relevant found (nothing above the score floor)."
    return {"hits": hit_rows(found), "status": note}
