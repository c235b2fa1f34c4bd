"""Uploads: read the file with a size cap, then do the file work off the event loop.

The request's body is already capped while it streams in (:mod:`api.guards`). Every route that
takes a file then reads it with :func:`read_upload`, which adds the per-file cap of its
feature. :func:`process_upload` does that and moves what follows (decoding images, inflating
archives, fsync, the database commit) to a worker thread, so one upload never stalls the other
requests the server is answering::

    @router.put("/{agent_id}/avatar", response_model=AgentView)
    async def set_avatar(svc: Svc, agent_id: str, file: Annotated[UploadFile, File()], ...):
        return await process_upload(
            file,
            svc.settings.server.max_upload_bytes,
            lambda _name, content: svc.agents.set_avatar(agent_id, content),
        )

``work`` receives the file's name and bytes and is an ordinary (blocking) service call. Routes
whose work needs more than the name and bytes (a consent form, several files) call
:func:`read_upload` and ``run_in_threadpool`` themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from api.deps import read_upload

T = TypeVar("T")


async def process_upload(
    upload: UploadFile, limit: int, work: Callable[[str | None, bytes], T]
) -> T:
    """``work(filename, content)`` in the thread pool, after reading at most ``limit`` bytes."""
    content = await read_upload(upload, limit)
    return await run_in_threadpool(work, upload.filename, content)


__all__ = ["process_upload", "read_upload"]
