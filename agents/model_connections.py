"""The model connections service: add, test, list and delete connections; pick the default.

Connections are install-wide (every agent may use them, and an ``openai`` one spends its
owner's API credit), so only an operator changes them (``require_operator``): a wallet listed
in ``ANIMA_ADMIN_ADDRESSES``; with that list empty, any signed-in wallet while the app listens
only on this machine (a personal install), and nobody otherwise. Reading the list is open to
every caller, because anyone who edits an agent picks its model from it; where a connection
points (its path or URL) is shown to operators only, and its API key to nobody: only whether
one is set.

The default model chosen here is stored in the database and read by the model pool on every
request (``default_model``, cached for ``DEFAULT_TTL_S``), so it takes effect without a
restart, in every process that shares the database. ``None`` keeps the settings' default
(``ANIMA_LLM_MODEL``: the bundled model on a fresh install).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agents.llm.connections import (
    CONN_PREFIX,
    KEY_FILE,
    ModelConnectionRecord,
    ModelSettingRecord,
    Probe,
    ResolvedModel,
    SecretBox,
    check_base_url,
    check_local_path,
    check_model_id,
    check_name,
    conn_ref,
    connection_settings,
    parse_conn_ref,
    probe_local,
    probe_openai,
    utcnow,
)
from agents.llm.model_source import display_name
from core.db import Database, UTCDateTime
from core.errors import AuthError, ConflictError, NotFoundError, NotOwnerError, ValidationError
from core.principal import Principal
from core.settings import Settings

DEFAULT_KEY = "default_model"
DEFAULT_TTL_S = 2.0
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
TOY_NOTE = (
    "The bundled SmolLM2-135M is a toy: it fits in a package so a fresh install chats "
    "offline, but it loses the thread after a few sentences."
)


class NewConnection(BaseModel):
    """What a person types to add a connection (the API's body and the screen's form)."""

    name: str = Field(max_length=64, description="lower-case letters, digits, - and _")
    kind: Literal["local", "openai"]
    path: str | None = Field(
        default=None,
        max_length=1000,
        description="local: a .gguf file or model folder inside <data_dir>/models (its name), "
        "or an absolute path inside a folder listed in ANIMA_MODEL_DIRS.",
    )
    base_url: str | None = Field(
        default=None,
        max_length=1000,
        description="openai: the server's base URL, e.g. http://127.0.0.1:8080/v1",
    )
    api_key: str | None = Field(
        default=None, max_length=1000, description="openai: sent as 'Authorization: Bearer'."
    )


class ConnectionView(BaseModel):
    id: str
    name: str
    kind: str
    models: list[str]
    # Model refs an agent's ``model`` or the default takes, in the order of ``models``.
    refs: list[str]
    details: dict[str, Any]
    # "set" or "not set": the key itself never leaves the service.
    api_key: Literal["set", "not set"]
    # Where it points; operators only (None for others).
    path: str | None = None
    base_url: str | None = None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class TestResult(BaseModel):
    ok: bool
    models: list[str]
    details: dict[str, Any]


class ModelsOverview(BaseModel):
    # The default model: a ``conn:`` ref, or None for the settings' default.
    default: str | None
    default_label: str
    settings_default: str
    toy_note: str
    models_dir: str
    connections: list[ConnectionView]
    can_change: bool


class ModelConnections:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        client_factory: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.box = SecretBox(settings.data_dir / KEY_FILE)
        self._client_factory = client_factory
        # Called with a connection's name after it changed or went (the pool's ``forget``).
        self.listeners: list[Callable[[str], None]] = []
        # Loads a model ref into memory now (the pool's), so the first reply does not wait.
        self.loader: Callable[[str], None] | None = None
        self._default: tuple[float, str | None] | None = None
        self._lock = threading.Lock()

    # ----- who may change them ---------------------------------------------------------
    def is_operator(self, principal: Principal) -> bool:
        try:
            self.require_operator(principal)
        except (AuthError, NotOwnerError):
            return False
        return True

    def require_operator(self, principal: Principal) -> None:
        if principal.is_system:
            return
        if not principal.signed_in:
            raise AuthError("sign in to change model connections (they serve every agent)")
        admins = self.settings.auth.admin_address_list
        if admins:
            if (principal.address or "").lower() not in admins:
                raise NotOwnerError(
                    "only the wallets in ANIMA_ADMIN_ADDRESSES may change model connections"
                )
            return
        server = self.settings.server
        if server.host not in LOOPBACK_HOSTS or server.public_url:
            raise NotOwnerError(
                "this app is reachable from other machines: list the operators' wallets in "
                "ANIMA_ADMIN_ADDRESSES to change model connections"
            )

    # ----- reading -------------------------------------------------------------------------
    def overview(self, *, principal: Principal) -> ModelsOverview:
        operator = self.is_operator(principal)
        with self.db.session() as s:
            rows = s.scalars(select(ModelConnectionRecord).order_by(ModelConnectionRecord.name))
            views = [self._view(row, operator) for row in rows]
        default = self._read_default()
        settings_default = self._settings_default_label()
        return ModelsOverview(
            default=default,
            default_label=default or settings_default,
            settings_default=settings_default,
            toy_note=TOY_NOTE,
            models_dir=str(self.settings.models_dir) if operator else "<data_dir>/models",
            connections=views,
            can_change=operator,
        )

    def model_choices(self) -> list[tuple[str, str]]:
        """(label, ref) of every connection's models, for a model picker (public names)."""
        with self.db.session() as s:
            rows = s.scalars(select(ModelConnectionRecord).order_by(ModelConnectionRecord.name))
            return [
                (f"{row.name}: {model}", conn_ref(row.name, model))
                for row in rows
                for model in row.models or []
            ]

    # ----- testing and changing --------------------------------------------------------
    def test(self, spec: NewConnection, *, principal: Principal) -> TestResult:
        """Try ``spec`` without saving it (a failure raises with the server's answer)."""
        self.require_operator(principal)
        if spec.name.strip():  # a name is needed only to save, but a bad one is said now
            check_name(spec.name)
        probe, _ = self._probe(spec)
        return TestResult(ok=True, models=probe.models, details=probe.details)

    def add(self, spec: NewConnection, *, principal: Principal) -> ConnectionView:
        """Test ``spec`` and save it only when the test passed."""
        self.require_operator(principal)
        name = check_name(spec.name)
        with self.db.session() as s:
            if s.scalar(select(ModelConnectionRecord).where(ModelConnectionRecord.name == name)):
                raise ConflictError(f"a connection named {name!r} exists: pick another name")
        probe, where = self._probe(spec)
        key = (spec.api_key or "").strip()
        row = ModelConnectionRecord(
            id=str(uuid.uuid4()),
            name=name,
            kind=spec.kind,
            path=where if spec.kind == "local" else None,
            base_url=where if spec.kind == "openai" else None,
            api_key_encrypted=self.box.encrypt(key) if key else None,
            models=probe.models,
            details=probe.details,
        )
        try:
            with self.db.session() as s:
                s.add(row)
                s.flush()
                return self._view(row, operator=True)
        except IntegrityError as exc:  # the same name added at the same moment
            raise ConflictError(f"a connection named {name!r} exists: pick another name") from exc

    def retest(self, name: str, *, principal: Principal) -> ConnectionView:
        """Test a saved connection again and refresh its list of models."""
        self.require_operator(principal)
        with self.db.session() as s:
            row = self._row(s, name)
            spec = NewConnection(
                name=row.name,
                kind=row.kind,  # type: ignore[arg-type]
                path=row.path,
                base_url=row.base_url,
                api_key=self._key_of(row),
            )
        probe, _ = self._probe(spec)
        with self.db.session() as s:
            row = self._row(s, name)
            row.models, row.details, row.updated_at = probe.models, probe.details, utcnow()
            s.flush()
            view = self._view(row, operator=True)
        self._changed(name)
        return view

    def delete(self, name: str, *, principal: Principal) -> None:
        self.require_operator(principal)
        with self.db.session() as s:
            s.delete(self._row(s, name))
            default = s.get(ModelSettingRecord, DEFAULT_KEY)
            parsed = parse_conn_ref(default.value or "") if default else None
            if default is not None and parsed and parsed[0] == name:
                default.value = None  # the default went with it: back to the settings'
        self._forget_default()
        self._changed(name)

    def set_default(self, ref: str | None, *, principal: Principal) -> ModelsOverview:
        """Make ``ref`` (``conn:<name>/<model>``) the default model; None: the settings'."""
        self.require_operator(principal)
        ref = (ref or "").strip() or None
        if ref is not None:
            self.resolve(ref)  # an unknown connection or model is refused here, not at chat
        with self.db.session() as s:
            row = s.get(ModelSettingRecord, DEFAULT_KEY)
            if row is None:
                s.add(ModelSettingRecord(key=DEFAULT_KEY, value=ref))
            else:
                row.value, row.updated_at = ref, utcnow()
        self._forget_default()
        return self.overview(principal=principal)

    def load(self, ref: str, *, principal: Principal) -> float:
        """Load ``ref``'s model now (a local one takes seconds to minutes); the seconds taken.

        Operators only: loading holds memory every agent shares.
        """
        self.require_operator(principal)
        self.resolve(ref)  # unknown refs are refused before anything loads
        if self.loader is None:
            raise ValidationError("models cannot be loaded from here in this process")
        started = time.monotonic()
        self.loader(ref)
        return time.monotonic() - started

    # ----- what the model pool asks ----------------------------------------------------
    def default_model(self) -> str | None:
        """The default model ref, or None for the settings' default (read at most every
        ``DEFAULT_TTL_S``, so another process's change arrives within that)."""
        with self._lock:
            cached = self._default
            if cached is not None and time.monotonic() - cached[0] < DEFAULT_TTL_S:
                return cached[1]
        value = self._read_default()
        with self._lock:
            self._default = (time.monotonic(), value)
        return value

    def resolve(self, ref: str) -> ResolvedModel:
        """The backend settings for ``conn:<name>/<model>``; refused if either is unknown."""
        parsed = parse_conn_ref(ref)
        if parsed is None:
            raise ValidationError(f"model {ref!r} is not a connection's model ({CONN_PREFIX}...)")
        name, model = parsed
        with self.db.session() as s:
            row = s.scalar(select(ModelConnectionRecord).where(ModelConnectionRecord.name == name))
            if row is None:
                raise ValidationError(
                    f"model {ref!r}: no model connection named {name!r} (add it on the Models "
                    "screen, or pick another model)"
                )
            models = list(row.models or [])
            model = model or (models[0] if models else "")
            if row.kind == "openai" and model not in models:
                raise ValidationError(
                    f"model {ref!r}: {name} does not list {model!r}; test the connection again "
                    f"to refresh its models ({', '.join(models[:5])})"
                )
            if row.kind == "local":  # re-checked: ANIMA_MODEL_DIRS may have changed since
                check_local_path(self.settings, row.path or "")
            settings = connection_settings(self.settings, row, model, self._key_of(row))
            key = f"{CONN_PREFIX}{name}/{model}#{row.id}:{row.updated_at.isoformat()}"
            return ResolvedModel(key=key, settings=settings, in_process=row.kind == "local")

    # ----- internals -----------------------------------------------------------------------
    def _probe(self, spec: NewConnection) -> tuple[Probe, str]:
        """The test's findings and the checked path or URL it tested."""
        if spec.kind == "local":
            path = check_local_path(self.settings, spec.path or "")
            return probe_local(path), str(path)
        url = check_base_url(spec.base_url or "")
        client = self._client_factory() if self._client_factory else None
        try:
            probe = probe_openai(url, (spec.api_key or "").strip() or None, client)
        finally:
            if client is not None:
                client.close()
        for model in probe.models:
            check_model_id(model)
        return probe, url

    def _key_of(self, row: ModelConnectionRecord) -> str | None:
        return self.box.decrypt(row.api_key_encrypted) if row.api_key_encrypted else None

    def _row(self, s: Any, name: str) -> ModelConnectionRecord:
        row = s.scalar(select(ModelConnectionRecord).where(ModelConnectionRecord.name == name))
        if row is None:
            raise NotFoundError(f"no model connection named {name!r}")
        return row

    def _view(self, row: ModelConnectionRecord, operator: bool) -> ConnectionView:
        models = list(row.models or [])
        return ConnectionView(
            id=row.id,
            name=row.name,
            kind=row.kind,
            models=models,
            refs=[conn_ref(row.name, m) for m in models],
            details=dict(row.details or {}),
            api_key="set" if row.api_key_encrypted else "not set",
            path=row.path if operator else None,
            base_url=row.base_url if operator else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _read_default(self) -> str | None:
        with self.db.session() as s:
            row = s.get(ModelSettingRecord, DEFAULT_KEY)
            return row.value if row is not None else None

    def _forget_default(self) -> None:
        with self._lock:
            self._default = None

    def _settings_default_label(self) -> str:
        llm = self.settings.llm
        if llm.backend == "openai":
            return f"{llm.openai_model} (server from ANIMA_OPENAI_BASE_URL)"
        return display_name(llm.model)

    def _changed(self, name: str) -> None:
        for listener in self.listeners:
            listener(name)
