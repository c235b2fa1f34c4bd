"""Warmed persona prefixes on disk: llama.cpp slot files, checksummed, capped, addressed by tokens.

A slot file holds the KV of a token prefix (an agent's system prompt, card and examples)
computed under one model and one adapter; restoring it into a slot spares computing that
prefix again, in a new chat or after a restart. A file is only as good as the three things
it was computed from, so its name hashes all three (the model file, the adapter file, the
sha256 of the prefix *tokens*), and a sidecar JSON written after it records them with the
file's own sha256 and size: a file without a sidecar, or whose bytes no longer match it
(a crash mid-write, a truncated copy, a flipped bit), is deleted and never restored.
llama.cpp writes the file under a temporary name; it is renamed into place once hashed.

The store is addressed by tokens, not by agent: a prompt asks for the entry of its model and
adapter that shares the longest prefix with it, so a chat that adds a persona or a lorebook
entry after the card's fixed part still starts from the file. Agents are only tags, for
deleting an agent's files with it. The total size is capped (``ANIMA_LLM_KV_CACHE_MB``):
the least recently used entries go first.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

log = logging.getLogger(__name__)

_SUFFIX = ".bin"
_SIDECAR = ".json"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600


def prefix_hash(tokens: list[int] | tuple[int, ...]) -> str:
    """sha256 of the token ids (little-endian int32): the prefix's identity."""
    return hashlib.sha256(array.array("i", tokens).tobytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _common_prefix(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class KVEntry:
    """One warmed prefix: its file's stem, what it was computed from, and its checksum."""

    name: str
    model: str
    adapter: str | None  # the adapter folder (for deleting an adapter's files)
    adapter_id: str | None  # the adapter file it was computed under (part of the key)
    prefix_sha256: str
    tokens: tuple[int, ...]
    size: int
    file_sha256: str
    agents: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        """The name llama.cpp's slot actions take (relative to the store's folder)."""
        return self.name + _SUFFIX


def entry_name(model: str, adapter_id: str | None, tokens: list[int] | tuple[int, ...]) -> str:
    key = f"{model}\0{adapter_id or ''}\0{prefix_hash(tokens)}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class KVStore:
    """The folder of slot files of one data folder (shared by every engine of the process)."""

    _stores: ClassVar[dict[Path, KVStore]] = {}
    _stores_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_folder(cls, folder: Path, cap_mb: float) -> KVStore:
        """One store per folder, so that every engine's index and cap see the same files."""
        folder = folder.resolve()
        with cls._stores_lock:
            store = cls._stores.get(folder)
            if store is None:
                store = cls._stores[folder] = cls(folder, cap_mb)
            store.cap_bytes = int(cap_mb * 1024 * 1024)
            return store

    def __init__(self, folder: Path, cap_mb: float) -> None:
        self.folder = folder
        self.cap_bytes = int(cap_mb * 1024 * 1024)
        self._lock = threading.Lock()
        self._entries: dict[str, KVEntry] | None = None
        self._verified: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) checked

    @property
    def slot_save_path(self) -> str:
        """llama.cpp joins this and a file name without a separator: it ends with one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return str(self.folder) + os.sep

    # ----- reading -----------------------------------------------------------------------
    def entries(self) -> list[KVEntry]:
        with self._lock:
            return list(self._index().values())

    def _index(self) -> dict[str, KVEntry]:
        if self._entries is None:
            self._entries = {}
            for sidecar in sorted(self.folder.glob(f"*{_SIDECAR}")):
                entry = _read_sidecar(sidecar)
                if entry is None:
                    log.warning("kv cache: unreadable %s removed", sidecar.name)
                    self._remove_files(sidecar.stem)
                else:
                    self._entries[entry.name] = entry
        return self._entries

    def find(self, model: str, adapter_id: str | None, tokens: list[int]) -> KVEntry | None:
        """The entry of exactly this prefix, if its file is intact."""
        name = entry_name(model, adapter_id, tokens)
        with self._lock:
            entry = self._index().get(name)
            if entry is None or entry.tokens != tuple(tokens):
                return None
            return entry if self._intact(entry) else None

    def best(
        self, model: str, adapter_id: str | None, prompt: list[int], at_least: int
    ) -> tuple[KVEntry, int] | None:
        """The intact entry sharing the longest prefix with ``prompt`` (over ``at_least``
        tokens), and that length. Used entries become the most recently used."""
        with self._lock:
            found: list[tuple[int, KVEntry]] = []
            for entry in self._index().values():
                if entry.model != model or entry.adapter_id != adapter_id:
                    continue
                if len(entry.tokens) <= at_least:  # cannot beat what the slot holds
                    continue
                shared = _common_prefix(entry.tokens, prompt)
                if shared > at_least:
                    found.append((shared, entry))
            for shared, entry in sorted(found, key=lambda f: -f[0]):
                if self._intact(entry):
                    self._touch(entry)
                    return entry, shared
            return None

    def path(self, entry: KVEntry) -> Path:
        return self.folder / entry.filename

    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._index().values())

    # ----- writing -----------------------------------------------------------------------
    def temp_name(self) -> str:
        """A fresh file name for llama.cpp to save a slot under, before ``commit``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return f"{_TMP_PREFIX}{secrets.token_hex(8)}{_SUFFIX}"

    def commit(
        self,
        temp: str,
        *,
        model: str,
        adapter: str | None,
        adapter_id: str | None,
        tokens: list[int],
        agent_id: str | None,
    ) -> KVEntry:
        """Hash the file llama.cpp saved under ``temp``, move it into place, write its
        sidecar (the commit point) and enforce the cap."""
        source = self.folder / temp
        name = entry_name(model, adapter_id, tokens)
        entry = KVEntry(
            name=name,
            model=model,
            adapter=adapter,
            adapter_id=adapter_id,
            prefix_sha256=prefix_hash(tokens),
            tokens=tuple(tokens),
            size=source.stat().st_size,
            file_sha256=_file_sha256(source),
            agents=(agent_id,) if agent_id else (),
        )
        with self._lock:
            old = self._index().get(name)
            if old is not None and agent_id is not None:
                entry = replace(entry, agents=tuple(dict.fromkeys([*old.agents, agent_id])))
            os.replace(source, self.folder / entry.filename)
            self._write_sidecar(entry)
            self._index()[name] = entry
            stat = (self.folder / entry.filename).stat()
            self._verified[name] = (stat.st_size, stat.st_mtime_ns)
            self._evict_locked(keep=name)
        return entry

    def tag(self, entry: KVEntry, agent_id: str | None) -> KVEntry:
        """Record that ``agent_id`` uses ``entry`` (its files go when the last user goes)."""
        with self._lock:
            current = self._index().get(entry.name, entry)
            self._touch(current)
            if agent_id is None or agent_id in current.agents:
                return current
            current = replace(current, agents=(*current.agents, agent_id))
            self._write_sidecar(current)
            self._index()[current.name] = current
            return current

    def untag_others(self, agent_id: str, keep: str) -> int:
        """Drop ``agent_id`` from its entries other than ``keep`` (its previous card or
        adapter); entries no agent uses any more are deleted. Returns how many were."""
        return self._drop(lambda e: agent_id in e.agents and e.name != keep, agent_id)

    def delete_agent(self, agent_id: str) -> int:
        """The agent is gone: its entries no other agent uses are deleted."""
        return self._drop(lambda e: agent_id in e.agents, agent_id)

    def delete_adapter(self, adapter: str) -> int:
        """The adapter folder is gone: every entry computed under it is deleted."""
        return self._drop(lambda e: e.adapter == adapter, None)

    def discard(self, entry: KVEntry) -> None:
        with self._lock:
            self._forget(entry.name)

    def _drop(self, match: Callable[[KVEntry], bool], agent_id: str | None) -> int:
        removed = 0
        with self._lock:
            for entry in list(self._index().values()):
                if not match(entry):
                    continue
                left = tuple(a for a in entry.agents if a != agent_id) if agent_id else ()
                if left:
                    kept = replace(entry, agents=left)
                    self._write_sidecar(kept)
                    self._index()[entry.name] = kept
                else:
                    self._forget(entry.name)
                    removed += 1
        return removed

    def evict(self) -> None:
        with self._lock:
            self._evict_locked(keep=None)

    def _evict_locked(self, keep: str | None) -> None:
        """Least recently used first (the sidecar's mtime, touched on every use) until the
        files fit the cap; also clears files no sidecar vouches for and stale temporaries."""
        index = self._index()
        now = time.time()
        for path in self.folder.glob(f"*{_SUFFIX}"):
            orphan = not path.name.startswith(_TMP_PREFIX) and path.stem not in index
            stale = path.name.startswith(_TMP_PREFIX) and now - _mtime(path) > _STALE_TMP_SECONDS
            if orphan or stale:
                path.unlink(missing_ok=True)
        total = sum(e.size for e in index.values())
        by_age = sorted(index.values(), key=lambda e: _mtime(self.folder / (e.name + _SIDECAR)))
        for entry in by_age:
            if total <= self.cap_bytes:
                break
            if entry.name == keep:
                continue
            log.info("kv cache: %s evicted (cap %d MB)", entry.name, self.cap_bytes >> 20)
            self._forget(entry.name)
            total -= entry.size

    # ----- helpers (lock held) -------------------------------------------------------------
    def _intact(self, entry: KVEntry) -> bool:
        """The file matches its sidecar (hashed once per process and file state)."""
        path = self.folder / entry.filename
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._forget(entry.name)
            return False
        state = (stat.st_size, stat.st_mtime_ns)
        if self._verified.get(entry.name) == state:
            return True
        if stat.st_size != entry.size or _file_sha256(path) != entry.file_sha256:
            log.warning("kv cache: %s does not match its checksum; removed", entry.filename)
            self._forget(entry.name)
            return False
        self._verified[entry.name] = state
        return True

    def _touch(self, entry: KVEntry) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.folder / (entry.name + _SIDECAR))

    def _forget(self, name: str) -> None:
        self._index().pop(name, None)
        self._verified.pop(name, None)
        self._remove_files(name)

    def _remove_files(self, name: str) -> None:
        (self.folder / (name + _SIDECAR)).unlink(missing_ok=True)
        (self.folder / (name + _SUFFIX)).unlink(missing_ok=True)

    def _write_sidecar(self, entry: KVEntry) -> None:
        record = {
            "model": entry.model,
            "adapter": entry.adapter,
            "adapter_id": entry.adapter_id,
            "prefix_sha256": entry.prefix_sha256,
            "token_count": len(entry.tokens),
            "tokens": list(entry.tokens),
            "size": entry.size,
            "file_sha256": entry.file_sha256,
            "agents": list(entry.agents),
        }
        target = self.folder / (entry.name + _SIDECAR)
        temp = self.folder / f"{_TMP_PREFIX}{secrets.token_hex(8)}{_SIDECAR}"
        temp.write_text(json.dumps(record))
        os.replace(temp, target)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _read_sidecar(path: Path) -> KVEntry | None:
    try:
        record = json.loads(path.read_text())
        tokens = tuple(int(t) for t in record["tokens"])
        if prefix_hash(tokens) != record["prefix_sha256"] or len(tokens) != record["token_count"]:
            return None
        return KVEntry(
            name=path.stem,
            model=str(record["model"]),
            adapter=record.get("adapter"),
            adapter_id=record.get("adapter_id"),
            prefix_sha256=str(record["prefix_sha256"]),
            tokens=tokens,
            size=int(record["size"]),
            file_sha256=str(record["file_sha256"]),
            agents=tuple(record.get("agents") or ()),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
