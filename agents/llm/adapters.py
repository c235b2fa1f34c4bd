"""Which base model a LoRA adapter belongs to, and the check that stops it running on another.

A LoRA adapter is a small set of deltas on a particular base model's weights. Loaded on a
different model it either fails (other shapes) or, worse, loads and produces nonsense (same
architecture, other weights: SmolLM2 base vs. instruct). So every adapter Anima writes
carries ``anima-adapter.json`` naming its base in two ways:

- ``base_model``: the reference the agent used (``bundled:smollm2``, a folder name under
  ``<data_dir>/models``, a Hugging Face id). Equal references mean the same model, which is
  the common case and costs no file access.
- ``base_fingerprint``: a hash of the architecture (``config.json``) and of the first rows of
  the embedding matrix, rounded to bfloat16 so that a float32 and a bfloat16 copy of the same
  weights agree. It settles the case where the references differ (the same model reached
  through another name, another install's folder path) without loading the model.

Adapters without that file (a peft folder a user placed by hand) are not checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from core.errors import AdapterMismatchError
from core.settings import Settings

log = logging.getLogger(__name__)

ADAPTER_META = "anima-adapter.json"
# Architecture keys that decide whether adapter shapes fit (and which models differ).
_ARCH_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "head_dim",
)
_EMBEDDING_NAMES = ("model.embed_tokens.weight", "transformer.wte.weight", "embed_tokens.weight")
_FINGERPRINT_ROWS = 8


def model_ref(settings: Settings, agent_model: str | None = None) -> str:
    """The base model an agent uses, as a stable reference (what ``base_model`` records)."""
    if agent_model:
        return agent_model
    if settings.llm.gguf_file:
        return f"{settings.llm.model}#{settings.llm.gguf_file}"
    return settings.llm.model


def read_adapter_meta(folder: Path) -> dict[str, Any] | None:
    """The adapter's ``anima-adapter.json``, or None for a hand-placed peft folder."""
    try:
        meta = json.loads((folder / ADAPTER_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def model_folder(settings: Settings) -> Path | None:
    """The local folder holding the (resolved) base model's files, or None if unknown."""
    from agents.llm.model_source import resolve_model

    source = resolve_model(settings)
    if source.is_local:
        return Path(source.path)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.path, "config.json")
    except Exception:  # an unusual cache layout: the caller falls back to no check
        return None
    return Path(found).parent if isinstance(found, str) else None


def fingerprint_folder(folder: Path) -> dict[str, str | None]:
    """``{"arch": ..., "weights": ...}`` hashes of a transformers model folder.

    ``weights`` is None when the folder holds no safetensors (only the architecture is
    compared then).
    """
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = {key: config.get(key) for key in _ARCH_KEYS}
    arch_hash = hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]
    return {"arch": arch_hash, "weights": _embedding_hash(folder, arch_hash)}


def _embedding_hash(folder: Path, arch_hash: str) -> str | None:
    import torch
    from safetensors import safe_open

    files: dict[str, Path] = {}
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = {name: folder / file for name, file in weight_map.items()}
    elif (folder / "model.safetensors").is_file():
        files = dict.fromkeys(_EMBEDDING_NAMES, folder / "model.safetensors")
    for name in _EMBEDDING_NAMES:
        path = files.get(name)
        if path is None or not path.is_file():
            continue
        with safe_open(str(path), "pt") as handle:
            if name not in handle.keys():  # noqa: SIM118  (safe_open is not a mapping)
                continue
            rows = handle.get_slice(name)[:_FINGERPRINT_ROWS]
        blob = rows.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
        return hashlib.sha256(arch_hash.encode() + blob).hexdigest()[:16]
    return None


def base_fingerprint(settings: Settings) -> dict[str, str | None] | None:
    """The fingerprint of the model ``settings`` load, or None if its files are not here."""
    try:
        folder = model_folder(settings)
        return fingerprint_folder(folder) if folder is not None else None
    except Exception as exc:  # unreadable files: report "unknown" rather than crash a reply
        log.warning("could not fingerprint base model %s: %s", settings.llm.model, exc)
        return None


def fingerprints_match(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool | None:
    """True/False when comparable; None when either side is unknown."""
    if not a or not b or not a.get("arch") or not b.get("arch"):
        return None
    if a["arch"] != b["arch"]:
        return False
    if a.get("weights") and b.get("weights"):
        return bool(a["weights"] == b["weights"])
    return True


def adapter_matches(
    meta: dict[str, Any] | None, ref: str, fingerprint: dict[str, Any] | None
) -> bool:
    """Whether an adapter (its metadata) fits the base model ``ref`` / ``fingerprint``."""
    if meta is None or meta.get("base_model") == ref:
        return True
    return fingerprints_match(meta.get("base_fingerprint"), fingerprint) is not False


def mismatch_message(name: str, meta: dict[str, Any], ref: str) -> str:
    trained = meta.get("base_model_name") or meta.get("base_model") or "another model"
    return (
        f"adapter '{name}' was trained on the base model {trained} "
        f"({meta.get('base_model')}); this agent uses {ref}. Activate an adapter trained on "
        f"{ref}, train a new one, or switch the agent's model back to {meta.get('base_model')}"
    )


def check_adapter_base(folder: Path, ref: str, settings: Settings) -> None:
    """Refuse (``AdapterMismatchError``) an adapter made for another base model than ``ref``.

    ``settings`` load the base model named by ``ref``; they are only read when the
    references differ and fingerprints must decide.
    """
    meta = read_adapter_meta(folder)
    if meta is None or meta.get("base_model") == ref:
        return
    if not adapter_matches(meta, ref, base_fingerprint(settings)):
        raise AdapterMismatchError(mismatch_message(folder.name, meta, ref))
