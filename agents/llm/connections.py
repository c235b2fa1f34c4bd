"""Model connections: the models an operator adds at run time, besides the settings' default.

A connection is either ``local`` (a GGUF file or model folder on this machine) or ``openai``
(an OpenAI-compatible server: llama.cpp server, Ollama, vLLM, LM Studio, a hosted API). An
agent names one of its models as ``conn:<connection>/<model id>``; the pool turns that into
the settings of a backend (``connection_settings``), so nothing else in the code knows where a
model comes from.

Why the checks here:
- A path comes from a request, so it never reaches the filesystem unchecked: a relative path
  must stay inside ``<data_dir>/models`` (``safe_join``), an absolute one inside a folder the
  operator listed in ``ANIMA_MODEL_DIRS``.
- A server's API key is a credential for someone else's service: it is kept encrypted at rest
  (AES-256-GCM, ``SecretBox``) with a key file only this process's user can read, and it
  leaves the process only in the ``Authorization`` header sent to that server.
- A connection is saved only after it answered (``probe_local`` / ``probe_openai``), so an
  agent never points at something that never worked.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import JSON, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.errors import AnimaError, BackendError, UnsafePathError, ValidationError
from core.files import safe_join
from core.settings import Settings

CONN_PREFIX = "conn:"
NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
_NAME = re.compile(rf"^{NAME_PATTERN}$")
# A model id as servers name them: "llama3.1:8b" (Ollama), "meta-llama/Llama-3-8B" (vLLM,
# OpenRouter), "model.gguf". No whitespace or control characters; at most 300 characters.
_MODEL_ID = re.compile(r"^[^\s\x00-\x1f]{1,300}$")
CONN_REF = re.compile(rf"^{CONN_PREFIX}({NAME_PATTERN})(?:/([^\s\x00-\x1f]{{1,300}}))?$")
KINDS = ("local", "openai")
KEY_FILE = "connections.key"
MAX_MODELS = 500  # what one server's list may hold in the table (hosted APIs list hundreds)
PROBE_TIMEOUT_S = 10.0
PLACE_A_MODEL = (
    "Put the model (a .gguf file, or a folder with config.json and safetensors) in {models} "
    "and give its name, or add the folder that holds it to ANIMA_MODEL_DIRS and give its "
    "absolute path."
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ModelConnectionRecord(Base):
    __tablename__ = "model_connections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    # local: the checked absolute path of the file or folder.
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    # openai: the server's base URL (".../v1") and its API key, encrypted (``SecretBox``).
    base_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    api_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the last successful test found: model ids, and facts about them (size, context).
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelSettingRecord(Base):
    """Install-wide model settings chosen at run time (the default model), by key."""

    __tablename__ = "model_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# ----- references --------------------------------------------------------------------------
def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise ValidationError(
            f"connection name {name!r}: use 1-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def check_model_id(model: str) -> str:
    if not _MODEL_ID.match(model or ""):
        raise ValidationError(f"model id {model!r}: 1-300 characters, no spaces")
    return model


def conn_ref(name: str, model: str) -> str:
    return f"{CONN_PREFIX}{name}/{model}"


def parse_conn_ref(ref: str) -> tuple[str, str | None] | None:
    """``(connection name, model id or None)`` for a ``conn:`` ref, None for anything else."""
    match = CONN_REF.match(ref)
    return (match.group(1), match.group(2)) if match else None


# ----- the key at rest ---------------------------------------------------------------------
class SecretBox:
    """AES-256-GCM with a random 96-bit nonce per value; the key lives in a 0600 file.

    ``<data_dir>/connections.key`` is made on first use, readable by this user only. Back it
    up with the database: without it the stored keys cannot be read (re-enter them then).
    """

    VERSION = "v1:"

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._key: bytes | None = None

    def _load_key(self) -> bytes:
        if self._key is None:
            if not self.key_file.exists():
                self.key_file.parent.mkdir(parents=True, exist_ok=True)
                try:  # O_EXCL: two processes starting at once never write two keys
                    fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(base64.b64encode(secrets.token_bytes(32)))
            raw = base64.b64decode(self.key_file.read_bytes().strip())
            if len(raw) != 32:
                raise BackendError(f"{self.key_file} does not hold a 256-bit key")
            self._key = raw
        return self._key

    def encrypt(self, plain: str) -> str:
        from Crypto.Cipher import AES

        nonce = secrets.token_bytes(12)
        cipher = AES.new(self._load_key(), AES.MODE_GCM, nonce=nonce)
        sealed, tag = cipher.encrypt_and_digest(plain.encode("utf-8"))
        return self.VERSION + base64.b64encode(nonce + tag + sealed).decode("ascii")

    def decrypt(self, token: str) -> str:
        from Crypto.Cipher import AES

        try:
            raw = base64.b64decode(token.removeprefix(self.VERSION))
            nonce, tag, sealed = raw[:12], raw[12:28], raw[28:]
            cipher = AES.new(self._load_key(), AES.MODE_GCM, nonce=nonce)
            return cipher.decrypt_and_verify(sealed, tag).decode("utf-8")
        except (ValueError, KeyError) as exc:
            raise BackendError(
                f"a stored API key cannot be decrypted with {self.key_file.name} (was the key "
                "file replaced?): enter the key again"
            ) from exc


# ----- testing a connection ----------------------------------------------------------------
@dataclass
class Probe:
    """What a test found: the model ids served, and facts worth showing."""

    models: list[str]
    details: dict[str, Any] = field(default_factory=dict)


def allowed_dirs(settings: Settings) -> list[Path]:
    """Where local models may live: ``<data_dir>/models`` and ``ANIMA_MODEL_DIRS``."""
    extra = [Path(p).expanduser() for p in settings.llm.model_dir_list]
    return [settings.models_dir.resolve(), *(p.resolve() for p in extra if p.is_absolute())]


def check_local_path(settings: Settings, raw: str) -> Path:
    """The model file or folder ``raw`` names, refused unless it lies in an allowed folder."""
    raw = (raw or "").strip()
    hint = PLACE_A_MODEL.format(models=settings.models_dir)
    if not raw or any(ord(ch) < 32 for ch in raw):
        raise ValidationError(f"give the model's file or folder name. {hint}")
    try:
        if raw.startswith(("/", "~")):
            path = Path(raw).expanduser().resolve()
            if not any(path.is_relative_to(folder) for folder in allowed_dirs(settings)):
                message = f"{raw} is outside the folders models may be loaded from. {hint}"
                raise ValidationError(message)
        else:
            path = safe_join(settings.models_dir, raw)
        exists = path.exists()
    except (UnsafePathError, OSError, RuntimeError) as exc:  # RuntimeError: "~nobody"
        message = f"{raw!r} is not a file or folder models may be loaded from. {hint}"
        raise ValidationError(message) from exc
    if not exists:
        raise ValidationError(f"{path} does not exist. {hint}")
    return path


def probe_local(path: Path) -> Probe:
    """Read the model's metadata without loading it: a GGUF header or a ``config.json``."""
    gguf = _the_gguf(path)
    if gguf is not None:
        return Probe(models=[path.name], details=_gguf_facts(gguf))
    config = path / "config.json"
    if path.is_dir() and config.is_file() and any(path.glob("*.safetensors")):
        import json

        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValidationError(f"{config} is not readable JSON: {exc}") from exc
        facts = {
            "format": "safetensors",
            "architecture": ", ".join(data.get("architectures") or []) or "unknown",
            "context_length": data.get("max_position_embeddings"),
        }
        return Probe(models=[path.name], details=facts)
    raise ValidationError(
        f"{path.name} is neither a .gguf file nor a folder holding one GGUF or a config.json "
        "with safetensors weights"
    )


def _the_gguf(path: Path) -> Path | None:
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValidationError(f"{path.name} is not a .gguf file")
        return path
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) > 1 and not (path / "config.json").is_file():
        names = ", ".join(g.name for g in ggufs[:5])
        raise ValidationError(f"{path.name} holds several GGUF files ({names}): add one file")
    return ggufs[0] if len(ggufs) == 1 and not (path / "config.json").is_file() else None


def _gguf_facts(gguf: Path) -> dict[str, Any]:
    import gguf as gguf_lib

    try:
        reader = gguf_lib.GGUFReader(str(gguf))
        arch = str(reader.fields["general.architecture"].contents())
    except Exception as exc:  # the reader raises many kinds on a damaged or foreign file
        raise ValidationError(f"{gguf.name} is not a readable GGUF model: {exc}") from exc

    def value(key: str) -> Any:
        found = reader.fields.get(key)
        return found.contents() if found is not None else None

    return {
        "format": "gguf",
        "architecture": arch,
        "title": value("general.name"),
        "context_length": value(f"{arch}.context_length"),
        "size_mb": round(gguf.stat().st_size / 1e6, 1),
    }


def check_base_url(url: str) -> str:
    url = (url or "").strip().rstrip("/")
    try:
        parsed = httpx.URL(url) if url and url.isprintable() and " " not in url else None
    except (httpx.InvalidURL, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValidationError(
            f"server URL {url!r}: give the OpenAI-compatible base URL, such as "
            "http://127.0.0.1:8080/v1 (llama.cpp server) or http://127.0.0.1:11434/v1 (Ollama)"
        )
    if parsed.userinfo or parsed.query:  # a URL is shown and logged; a key is not
        raise ValidationError(
            "server URL: put no password, key or query in the URL; give the key in the API "
            "key field, where it is stored encrypted"
        )
    return url


def probe_openai(base_url: str, api_key: str | None, client: httpx.Client | None = None) -> Probe:
    """``GET {base_url}/models`` with the key; the server's own answer on failure."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    own = client is None
    client = client or httpx.Client(timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    try:
        response = client.get(f"{base_url}/models", headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        raise ConnectionTestError(
            f"{base_url} did not answer ({type(exc).__name__}: {exc}). Is the server running, "
            "and is the URL the one it prints (often ending in /v1)?"
        ) from exc
    finally:
        if own:
            client.close()
    if response.status_code >= 300:
        body = response.text[:300].strip()
        hint = " Check the API key." if response.status_code in (401, 403) else ""
        raise ConnectionTestError(
            f"{base_url}/models answered HTTP {response.status_code}: {body or '(empty)'}.{hint}"
        )
    try:
        data = response.json().get("data")
        models = [str(item["id"]) for item in data if isinstance(item, dict) and item.get("id")]
    except (ValueError, AttributeError, TypeError, KeyError) as exc:
        raise ConnectionTestError(
            f"{base_url}/models did not answer an OpenAI model list: {response.text[:200]!r}"
        ) from exc
    if not models:
        raise ConnectionTestError(f"{base_url}/models lists no models: load one on the server")
    return Probe(models=models[:MAX_MODELS], details={"listed": len(models)})


class ConnectionTestError(AnimaError):
    """A connection did not pass its test; the message carries what the server said."""

    status = 422


# ----- what the pool builds ----------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedModel:
    """A model ref turned into backend settings; ``key`` changes when the connection does,
    so the pool never serves a backend built from an old version of it."""

    key: str
    settings: Settings = field(repr=False)  # holds the decrypted API key: never in a log line
    in_process: bool = True


def connection_settings(
    base: Settings, record: ModelConnectionRecord, model: str, api_key: str | None
) -> Settings:
    """The install's settings with this connection's backend swapped in."""
    if record.kind == "local":
        return base.model_copy(
            update={"llm_backend": "local", "llm_model": record.path, "llm_gguf_file": None}
        )
    return base.model_copy(
        update={
            "llm_backend": "openai",
            "openai_base_url": record.base_url,
            "openai_api_key": api_key or "not-needed",
            "openai_model": model,
        }
    )
