"""Adapter folders on disk: written once under a unique name, never changed, removed whole.

``<data_dir>/adapters/<name>/`` holds what peft saves (``adapter_config.json``,
``adapter_model.safetensors``) plus ``anima-adapter.json`` (agent, version, base model,
scores). The serving layer caches what it derives from an adapter (a GGUF conversion, a loaded
copy) by the adapter's *name*, so a name is never reused and a folder is never rewritten: a
new version is a new folder. A folder is assembled under a hidden staging name and renamed
into place, so it appears complete or not at all; it leaves by being renamed aside before it
is deleted, so a half-deleted adapter is never served either.

Names look like ``aria-v3-1a2b3c4d``: the agent's name, the version and a random tag, which is
what a vLLM ``--lora-modules`` list shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from agents.llm.adapters import ADAPTER_META, read_adapter_meta
from core.errors import CardFormatError
from core.files import atomic_write

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", ADAPTER_META)
REQUIRED_FILES = ADAPTER_FILES[:2]
# Where the active adapter sits inside a CHARX archive.
CHARX_FOLDER = "anima/adapter/"
META_FORMAT = 1


def adapter_name(agent_name: str, version: int, tag: str | None = None) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", agent_name.lower()).strip("-")[:40].strip("-") or "agent"
    return f"{slug}-v{version}-{(tag or uuid.uuid4().hex)[:8]}"


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def publish(folder: Path, root: Path, name: str, meta: dict[str, Any]) -> Path:
    """Move a finished adapter ``folder`` into ``root/name`` with its metadata, atomically.

    ``folder`` must be on the same filesystem (it is, under the data directory). If
    ``root/name`` already exists this is a re-run after a crash: the existing folder stands.
    """
    target = root / name
    if target.is_dir():
        return target
    for extra in folder.iterdir():  # peft's model card, the trainer's notes: not the adapter
        if extra.name not in ADAPTER_FILES:
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    atomic_write(folder / ADAPTER_META, json.dumps(meta, indent=2).encode("utf-8"))
    root.mkdir(parents=True, exist_ok=True)
    os.replace(folder, target)
    return target


def write_new(root: Path, name: str, files: dict[str, bytes]) -> Path:
    """A new adapter folder from file contents (an import), staged then renamed."""
    target = root / name
    if target.exists():
        raise FileExistsError(f"adapter {name} exists; adapter folders are never rewritten")
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for filename, blob in files.items():
            atomic_write(staging / filename, blob)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove(root: Path, name: str) -> None:
    """Delete an adapter folder: renamed aside first, so it is never served half-deleted."""
    target = root / name
    if not target.exists():
        return
    trash = root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
    os.replace(target, trash)
    shutil.rmtree(trash, ignore_errors=True)


def folders_of_agent(root: Path, agent_id: str) -> list[str]:
    """Names of the adapter folders whose metadata says they belong to ``agent_id``."""
    if not root.is_dir():
        return []
    names = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            meta = read_adapter_meta(folder)
            if meta is not None and meta.get("agent_id") == agent_id:
                names.append(folder.name)
    return names


def read_files(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in ADAPTER_FILES if (folder / n).is_file()}


def check_files(files: dict[str, bytes]) -> dict[str, Any]:
    """Validate adapter files that arrived in a CHARX; returns the peft config.

    A card from elsewhere is untrusted: the config must be a LoRA config and the weights a
    readable safetensors file, or the import is refused before anything is stored.
    """
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        names = ", ".join(missing)
        raise CardFormatError(f"the card's LoRA adapter is incomplete: {names} missing")
    try:
        config = json.loads(files["adapter_config.json"].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CardFormatError(f"the card's adapter_config.json is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
        raise CardFormatError("the card's adapter is not a peft LoRA adapter")
    try:
        from safetensors.torch import load as load_safetensors

        tensors = load_safetensors(files["adapter_model.safetensors"])
    except Exception as exc:
        raise CardFormatError(f"the card's adapter weights cannot be read: {exc}") from exc
    if not tensors or not all(".lora_" in key for key in tensors):
        raise CardFormatError("the card's adapter weights hold no LoRA tensors")
    if ADAPTER_META in files:
        try:
            meta = json.loads(files[ADAPTER_META].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CardFormatError(f"the card's {ADAPTER_META} is not valid JSON") from exc
        if not isinstance(meta, dict):
            raise CardFormatError(f"the card's {ADAPTER_META} must be a JSON object")
    return config
