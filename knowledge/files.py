"""The files a version passes through on its way into the stores.

An upload's extracted text is written to ``<version>.json`` at once, so the ingest job can
run (and re-run after a crash) without the upload; the job's first step writes the chunks to
``<version>.chunks.json``, so every later batch embeds exactly the same chunks. Both go when
the version is active or purged. Writes are atomic: a crash leaves the old file or the new.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.files import atomic_write, check_id
from core.settings import Settings
from knowledge.base import Chunk
from knowledge.loaders import ParsedDocument, Section


class VersionFiles:
    """``<knowledge_dir>/files/<kb_id>/<version>.json`` and ``<version>.chunks.json``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def base_dir(self, kb_id: str) -> Path:
        return self.settings.knowledge_dir / "files" / check_id(kb_id, "knowledge base id")

    def parsed_path(self, kb_id: str, version: str) -> Path:
        return self.base_dir(kb_id) / f"{check_id(version, 'version')}.json"

    def chunks_path(self, kb_id: str, version: str) -> Path:
        return self.base_dir(kb_id) / f"{check_id(version, 'version')}.chunks.json"

    def write_parsed(self, kb_id: str, version: str, parsed: ParsedDocument) -> None:
        payload = {
            "filename": parsed.filename,
            "media_type": parsed.media_type,
            "pages": parsed.pages,
            "sections": [{"page": s.page, "text": s.text} for s in parsed.sections],
        }
        atomic_write(self.parsed_path(kb_id, version), json.dumps(payload).encode())

    def read_sections(self, kb_id: str, version: str) -> list[Section]:
        parsed = json.loads(self.parsed_path(kb_id, version).read_text(encoding="utf-8"))
        return [Section(s["page"], s["text"]) for s in parsed["sections"]]

    def write_chunks(
        self, kb_id: str, version: str, filename: str, document_id: str, chunks: list[Any]
    ) -> None:
        payload = {"filename": filename, "document_id": document_id, "chunks": chunks}
        atomic_write(self.chunks_path(kb_id, version), json.dumps(payload).encode())

    def read_chunks(self, kb_id: str, version: str) -> list[Chunk]:
        data = json.loads(self.chunks_path(kb_id, version).read_text(encoding="utf-8"))
        return [
            Chunk(
                id=f"{version}:{c['position']}",
                kb_id=kb_id,
                document_id=data["document_id"],
                version=version,
                filename=data["filename"],
                page=c["page"],
                position=c["position"],
                text=c["text"],
                context=c.get("context", ""),
            )
            for c in data["chunks"]
        ]

    def remove(self, kb_id: str, version: str) -> None:
        self.parsed_path(kb_id, version).unlink(missing_ok=True)
        self.chunks_path(kb_id, version).unlink(missing_ok=True)

    def remove_base(self, kb_id: str) -> None:
        shutil.rmtree(self.base_dir(kb_id), ignore_errors=True)
