"""The files the llama.cpp engine serves, made once and cached under ``settings.models_dir``.

The engine reads GGUF. The bundled model already is one (served as shipped by default, or
re-encoded once with ``ANIMA_LLM_ENGINE_FORMAT``), and so is a user's GGUF of any architecture
llama.cpp knows (Qwen2/2.5/3, Mistral, Gemma, Phi, ...); a local Hugging Face folder is
converted once (the architectures ``gguf_convert.ARCHS`` lists); peft adapters are converted
once per adapter version. Prompts are tokenized in Python, so that prompt assembly can count
tokens without a round trip to the engine: a Hugging Face folder with its own tokenizer; a GGUF
with a tokenizer that transformers builds from the GGUF's own vocabulary, merges, special
tokens and chat template (no tokenizer files needed beside it; the vocabulary is the one the
weights were trained with, and the one llama.cpp turns generated ids back into text with),
saved once as a tokenizer folder so later starts load it in a moment. Every artefact is
written under a temporary name and renamed into place under a file lock, like
``model_source.ensure_converted``: a crash never leaves half a file, and two processes never
convert the same thing at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.llm.gguf_convert import (
    UnsupportedByEngine,
    convert_lora,
    convert_model,
    engine_arch,
    requantize_gguf,
)
from agents.llm.model_source import _BUNDLED, BUNDLED_PREFIX, _slug, bundled_gguf_path, local_gguf
from core.errors import BackendError
from core.settings import Settings

_MARKER = "anima-source.json"


@dataclass(frozen=True)
class EngineModel:
    """A GGUF the engine loads, the tokenizer folder for prompts, and the head counts."""

    name: str
    gguf: Path
    tokenizer_dir: Path
    # arch (llama.cpp's name), num_attention_heads, num_key_value_heads: what LoRA conversion needs
    config: dict[str, Any]
    context_length: int


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(
        f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()[:10]


def _lock_path(target: Path) -> Path:
    """Locks live in ``.locks/`` beside their target, apart from anything half-written."""
    folder = target.parent / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{target.name}.lock"


def build_file_once(target: Path, build: Callable[[Path], None]) -> Path:
    """``build(tmp)`` writes a file that is renamed to ``target``, unless it already exists."""
    if target.is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(_lock_path(target)), timeout=900):
        if target.is_file():
            return target
        fd, name = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            build(tmp)
            tmp.chmod(0o644)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return target


def build_dir_once(
    target: Path, fingerprint: dict[str, Any], build: Callable[[Path], None]
) -> Path:
    """The folder version of ``build_file_once``; a marker file records its source."""

    def current() -> bool:
        try:
            return json.loads((target / _MARKER).read_text(encoding="utf-8")) == fingerprint
        except (OSError, ValueError):
            return False

    if current():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(_lock_path(target)), timeout=900):
        if current():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        tmp.chmod(0o755)
        try:
            build(tmp)
            (tmp / _MARKER).write_text(json.dumps(fingerprint), encoding="utf-8")
            if target.exists():
                stale = target.with_name(f".{target.name}-stale-{os.getpid()}")
                target.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def resolve_engine_model(settings: Settings) -> EngineModel:
    """GGUF + tokenizer for ``settings.llm.model``; ``UnsupportedByEngine`` when impossible."""
    spec = settings.llm.model.strip()
    fmt = settings.llm.engine_format
    if spec.startswith(BUNDLED_PREFIX):
        name = spec.removeprefix(BUNDLED_PREFIX)
        gguf = bundled_gguf_path(name)
        _, label, folder = _BUNDLED[name]
        return _from_gguf(settings, gguf, f"{label} (bundled)", folder, fmt)
    path = Path(spec).expanduser()
    if not path.is_dir() and not (path.is_file() and path.suffix == ".gguf"):
        raise UnsupportedByEngine(
            f"{spec} is not a local folder or GGUF file; the llama.cpp engine serves the bundled "
            "model and local files (download a hub model to a folder first)"
        )
    path = path.resolve()
    try:
        gguf = local_gguf(path, settings.llm.gguf_file)
    except BackendError as exc:
        raise UnsupportedByEngine(exc.message) from exc
    if gguf is not None:
        folder = f"{_slug(gguf.stem)}-{_fingerprint(gguf)}"
        return _from_gguf(settings, gguf, f"{gguf.parent.name}/{gguf.name}", folder, fmt)
    weights = sorted(path.glob("*.safetensors"))
    if not (path / "config.json").is_file() or not weights:
        raise UnsupportedByEngine(f"{path} holds no config.json + safetensors weights")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    arch = engine_arch(config, path.name)
    dtype = "f16" if fmt in {"source", "q4_0"} else fmt  # q4_0 only re-encodes a GGUF
    key = hashlib.sha256("|".join(_fingerprint(w) for w in weights).encode()).hexdigest()[:10]
    target = settings.models_dir / f"{_slug(path.name)}-{key}-{dtype}.gguf"
    build_file_once(target, lambda tmp: convert_model(path, tmp, dtype))
    return EngineModel(
        name=path.name,
        gguf=target,
        tokenizer_dir=path,
        config={
            "arch": arch,
            "num_attention_heads": int(config["num_attention_heads"]),
            "num_key_value_heads": int(
                config.get("num_key_value_heads") or config["num_attention_heads"]
            ),
        },
        context_length=int(config.get("max_position_embeddings") or 2048),
    )


def _from_gguf(settings: Settings, gguf: Path, label: str, folder: str, fmt: str) -> EngineModel:
    import gguf as gguf_lib

    try:
        reader = gguf_lib.GGUFReader(str(gguf))
        arch = str(reader.fields["general.architecture"].contents())
    except (KeyError, ValueError, OSError) as exc:
        raise UnsupportedByEngine(f"{label} is not a readable GGUF model: {exc}") from exc

    def field(key: str, default: Any = None) -> Any:
        """``{arch}.{key}``; a per-layer list (some architectures) gives its largest value."""
        found = reader.fields.get(f"{arch}.{key}")
        value = found.contents() if found is not None else default
        return max(value) if isinstance(value, list) else value

    n_head = int(field("attention.head_count", 0))
    config = {
        "arch": arch,
        "num_attention_heads": n_head,
        "num_key_value_heads": int(field("attention.head_count_kv", n_head)),
    }
    context = int(field("context_length", 2048))
    served = gguf
    if fmt != "source":
        served = build_file_once(
            settings.models_dir / f"{folder}-{fmt}.gguf",
            lambda tmp: requantize_gguf(gguf, tmp, fmt),
        )
    tokenizer = build_dir_once(
        settings.models_dir / f"{folder}-tokenizer",
        {"gguf": gguf.name, "size": gguf.stat().st_size},
        lambda tmp: _save_tokenizer(gguf, tmp),
    )
    return EngineModel(
        name=label, gguf=served, tokenizer_dir=tokenizer, config=config, context_length=context
    )


def _save_tokenizer(gguf: Path, out_dir: Path) -> None:
    """The GGUF's own vocabulary as a Hugging Face tokenizer folder."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # transformers knows no builder for this vocabulary type
        raise UnsupportedByEngine(
            f"{gguf.name}: no tokenizer could be built from it: {exc}"
        ) from exc
    tokenizer.save_pretrained(out_dir)


def adapter_gguf(settings: Settings, model: EngineModel, adapter_dir: Path) -> Path:
    """The adapter converted for ``model``, cached per adapter version and base model."""
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise UnsupportedByEngine(f"{adapter_dir.name}: no adapter_model.safetensors")
    key = hashlib.sha256(
        f"{_fingerprint(weights)}:{_fingerprint(adapter_dir / 'adapter_config.json')}:"
        f"{model.gguf.name}".encode()
    ).hexdigest()[:12]
    target = settings.models_dir / "lora" / f"{_slug(adapter_dir.name)}-{key}.gguf"
    return build_file_once(target, lambda tmp: convert_lora(adapter_dir, model.config, tmp))
