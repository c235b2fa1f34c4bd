"""The ingest job: chunk, embed into Chroma batch by batch, index keywords, then switch over;
and the re-index job, which does the same for every stale document of a base at once.

Runs on the durable job runner (``core/jobs/``): every batch is a checkpointed step, so a
job killed mid-way resumes at the batch it was in, and re-running a batch overwrites the same
chunk ids instead of adding copies. Nothing of the new version is searchable until the last
step switches the document to it in one transaction (see ``knowledge/service.py``); a job
that fails or is cancelled drops its version, leaving the document as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbos._error import DBOSWorkflowCancelledError

from core.jobs import JobCancelled, JobContext, TargetGone, job_kind

if TYPE_CHECKING:
    from knowledge.service import KnowledgeService

BATCH = 64


@dataclass(frozen=True)
class IngestDeps:
    """What the ingest job uses (handed over in ``container.py``)."""

    knowledge: KnowledgeService


@job_kind("knowledge.ingest", deps=IngestDeps)
def ingest(
    ctx: JobContext[IngestDeps], *, kb_id: str, document_id: str, version: str
) -> dict[str, Any]:
    knowledge = ctx.deps.knowledge
    try:
        ctx.progress(0, 0, "splitting into chunks")
        total = ctx.step("chunk", knowledge.prepare_chunks, kb_id, version)
        ctx.progress(0, total, f"embedding {total} chunks")
        for n, start in enumerate(range(0, total, BATCH)):
            ctx.raise_if_cancelled()
            ctx.step(
                f"vectors-{n}", knowledge.write_vectors, kb_id, version, start, BATCH, retries=2
            )
            done = min(total, start + BATCH)
            ctx.progress(done, total, f"embedded {done} of {total} chunks")
        ctx.raise_if_cancelled()
        ctx.step("keywords", knowledge.write_keywords, kb_id, version, retries=2)
        replaced = ctx.step(
            "activate", knowledge.activate_version, kb_id, document_id, version, retries=2
        )
        ctx.progress(total, total, f"{total} chunks searchable")
        ctx.step("purge", knowledge.purge_versions, kb_id, True)
    except TargetGone as exc:
        knowledge.drop_version(version, exc.reason, by_job=True)
        raise
    except (JobCancelled, DBOSWorkflowCancelledError):
        knowledge.drop_version(version, "indexing was cancelled", by_job=True)
        raise
    except Exception as exc:
        # A shutdown interrupts the job without failing it (it resumes on restart): keep the
        # version then. Only a real failure drops it.
        if not ctx.shutting_down:
            knowledge.drop_version(version, f"indexing failed: {exc}", by_job=True)
        raise
    return {"document_id": document_id, "version": version, "chunks": total, "replaced": replaced}


@job_kind("knowledge.reindex", deps=IngestDeps)
def reindex(ctx: JobContext[IngestDeps], *, kb_id: str) -> dict[str, Any]:
    """Re-cut every stale document of a base beside the old index, then switch them all at
    once (``knowledge/reindex.py``); until then searches answer from the old index."""
    knowledge = ctx.deps.knowledge
    plan: list[list[str]] = []
    try:
        ctx.progress(0, 0, "finding documents indexed with another chunking")
        plan = ctx.step("plan", knowledge.plan_reindex, kb_id, ctx.job_id)
        sizes = []
        for n, (_, version) in enumerate(plan):
            ctx.raise_if_cancelled()
            sizes.append(ctx.step(f"chunk-{n}", knowledge.reindex_chunks, kb_id, version))
        total = sum(max(0, size) for size in sizes)
        ctx.progress(0, total, f"re-indexing {len(plan)} documents ({total} chunks)")
        done = 0
        for n, ((_, version), size) in enumerate(zip(plan, sizes, strict=True)):
            for b, start in enumerate(range(0, size, BATCH)):
                ctx.raise_if_cancelled()
                ctx.step(
                    f"vectors-{n}-{b}",
                    knowledge.reindex_vectors,
                    kb_id,
                    version,
                    start,
                    BATCH,
                    retries=2,
                )
                done += min(BATCH, size - start)
                ctx.progress(done, total, f"embedded {done} of {total} chunks")
            if size > 0:
                ctx.step(f"keywords-{n}", knowledge.reindex_keywords, kb_id, version, retries=2)
        ctx.raise_if_cancelled()
        switched = ctx.step("activate", knowledge.activate_reindex, kb_id, plan, retries=2)
        ctx.progress(total, total, f"{switched} documents re-indexed, {total} chunks searchable")
        ctx.step("purge", knowledge.purge_versions, kb_id, True)
        # Versions of documents that dropped out of the job (deleted, uploaded again) were
        # kept for this job's steps; now they go.
        ctx.step("forget", knowledge.drop_reindex, plan, "dropped out of the re-index")
    except TargetGone as exc:
        knowledge.drop_reindex(plan, exc.reason)
        raise
    except (JobCancelled, DBOSWorkflowCancelledError):
        knowledge.drop_reindex(plan, "re-indexing was cancelled")
        raise
    except Exception as exc:
        if not ctx.shutting_down:  # a shutdown only interrupts: the job resumes on restart
            knowledge.drop_reindex(plan, f"re-indexing failed: {exc}")
        raise
    return {"kb_id": kb_id, "documents": switched, "chunks": total}
