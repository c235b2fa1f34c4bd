"""Model connections as a service: keys encrypted at rest, a failed test saves nothing, paths
stay inside the allowed folders, only operators change anything, and the default model changes
which backend answers without a restart.

The servers here are ``httpx.MockTransport`` handlers that record what they were sent; the
real llama.cpp server is in ``test_model_connections_live.py``.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agents.llm.connections import ConnectionTestError, ModelConnectionRecord
from agents.llm.model_source import bundled_gguf_path
from agents.llm.openai_backend import OpenAICompatBackend
from agents.llm.pool import LLMPool, check_model_ref
from agents.model_connections import ModelConnections, NewConnection
from agents.schema import GenerationSettings
from core.db import Database
from core.errors import AuthError, ConflictError, NotOwnerError, ValidationError
from core.principal import ANONYMOUS, SYSTEM, Principal
from core.settings import Settings
from tests.fake_backends import ScriptedBackend

KEY = "sk-live-0123456789abcdef"
WALLET = Principal(address="0x00000000000000000000000000000000000000A1", via="session")


class EchoBackend(ScriptedBackend):
    model_name = "bundled-default"

    def stream(self, messages, params, result=None):  # type: ignore[no-untyped-def]
        yield "from the default"


class FakeServer:
    """An OpenAI-compatible ``/models`` that answers with ``status`` and records headers."""

    def __init__(self) -> None:
        self.status = 200
        self.models = ["llama3.1:8b", "qwen2.5:7b"]
        self.seen: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "invalid api key, says the server"})
        return httpx.Response(200, json={"data": [{"id": m} for m in self.models]})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


def make_settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", llm_preload=False, **extra)  # type: ignore[arg-type]


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    settings = make_settings(tmp_path)
    settings.ensure_dirs()
    database = Database(settings.resolved_database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def svc(tmp_path: Path, db: Database, server: FakeServer) -> ModelConnections:
    return ModelConnections(make_settings(tmp_path), db, client_factory=server.client)


def server_spec(name: str = "ollama", key: str | None = KEY) -> NewConnection:
    return NewConnection(name=name, kind="openai", base_url="http://gpu-box:11434/v1/", api_key=key)


def test_the_api_key_is_encrypted_at_rest_and_never_shown(
    svc: ModelConnections, server: FakeServer, tmp_path: Path
) -> None:
    view = svc.add(server_spec(), principal=SYSTEM)
    assert view.models == ["llama3.1:8b", "qwen2.5:7b"]
    assert view.api_key == "set" and KEY not in view.model_dump_json()
    assert server.seen[-1].headers["authorization"] == f"Bearer {KEY}"  # the test used it
    assert str(server.seen[-1].url) == "http://gpu-box:11434/v1/models"

    database = tmp_path / "data" / "anima.db"
    with sqlite3.connect(database) as raw:
        stored = raw.execute("SELECT api_key_encrypted FROM model_connections").fetchone()[0]
    assert stored.startswith("v1:") and KEY not in stored
    for path in (database, *database.parent.glob("anima.db-*")):  # the WAL too
        assert KEY.encode() not in path.read_bytes()
    key_file = tmp_path / "data" / "connections.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    overview = svc.overview(principal=ANONYMOUS)
    assert [c.name for c in overview.connections] == ["ollama"]
    assert overview.connections[0].base_url is None  # where it points: operators only
    assert KEY not in overview.model_dump_json()
    # The key is decrypted only to build the backend that sends it.
    resolved = svc.resolve("conn:ollama/qwen2.5:7b")
    assert resolved.settings.llm.openai_api_key == KEY
    assert resolved.settings.llm.openai_model == "qwen2.5:7b"
    assert not resolved.in_process
    assert KEY not in repr(resolved)  # a logged resolution never shows the key


def test_a_connection_that_fails_its_test_is_not_saved(
    svc: ModelConnections, server: FakeServer
) -> None:
    server.status = 401
    with pytest.raises(ConnectionTestError, match=r"HTTP 401.*invalid api key, says the server"):
        svc.add(server_spec(), principal=SYSTEM)
    with pytest.raises(ConnectionTestError, match="Check the API key"):
        svc.test(server_spec(), principal=SYSTEM)
    server.status, server.models = 200, []
    with pytest.raises(ConnectionTestError, match="lists no models"):
        svc.add(server_spec(), principal=SYSTEM)
    assert svc.overview(principal=SYSTEM).connections == []
    with svc.db.session() as s:
        assert s.query(ModelConnectionRecord).count() == 0


def test_an_unreachable_server_is_named_with_what_to_check(tmp_path: Path, db: Database) -> None:
    real = ModelConnections(make_settings(tmp_path), db)  # a real HTTP client
    spec = NewConnection(name="gone", kind="openai", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ConnectionTestError, match=r"did not answer.*Is the server running"):
        real.add(spec, principal=SYSTEM)
    assert real.overview(principal=SYSTEM).connections == []
    for bad in ("file:///etc/passwd", "gpu-box:8080", "", "http://u:sk-1@h/v1", "http://h/v1?k=1"):
        with pytest.raises(ValidationError, match="server URL"):
            real.test(NewConnection(name="x", kind="openai", base_url=bad), principal=SYSTEM)


def test_local_paths_outside_the_allowed_folders_are_refused(tmp_path: Path, db: Database) -> None:
    gguf = bundled_gguf_path()
    svc = ModelConnections(make_settings(tmp_path), db)
    refused = [str(gguf), "../../etc", "/etc/passwd", "~/.ssh", "a/../../b", "missing.gguf"]
    for path in refused:
        with pytest.raises(ValidationError, match="models") as err:
            svc.add(NewConnection(name="x", kind="local", path=path), principal=SYSTEM)
        assert "ANIMA_MODEL_DIRS" in err.value.message  # the error says how to place a model
    assert svc.overview(principal=SYSTEM).connections == []

    # The operator allows the folder that holds the file: the GGUF header is read, not loaded.
    allowed = ModelConnections(make_settings(tmp_path, model_dirs=str(gguf.parent)), db)
    view = allowed.add(NewConnection(name="smol", kind="local", path=str(gguf)), principal=SYSTEM)
    assert view.models == [gguf.name]
    assert view.details["format"] == "gguf" and view.details["architecture"] == "llama"
    assert view.details["context_length"] == 8192
    resolved = allowed.resolve(f"conn:smol/{gguf.name}")
    assert resolved.in_process and resolved.settings.llm.model == str(gguf.resolve())
    # A model placed in <data_dir>/models is named by its name alone.
    folder = tmp_path / "data" / "models" / "not-a-model"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(ValidationError, match=r"neither a \.gguf file nor a folder"):
        allowed.add(NewConnection(name="y", kind="local", path="not-a-model"), principal=SYSTEM)
    # Taking the folder off the allow-list takes the model away too.
    with pytest.raises(ValidationError, match="outside the folders"):
        svc.resolve(f"conn:smol/{gguf.name}")


def test_the_default_model_switches_without_a_restart(
    tmp_path: Path, svc: ModelConnections
) -> None:
    pool = LLMPool(make_settings(tmp_path), default=EchoBackend())
    pool.connections = svc
    svc.listeners.append(pool.forget)
    assert pool.get().backend.model_name == "bundled-default"

    svc.add(server_spec(), principal=SYSTEM)
    svc.set_default("conn:ollama/llama3.1:8b", principal=SYSTEM)
    remote = pool.get().backend
    assert isinstance(remote, OpenAICompatBackend)
    assert remote.base_url == "http://gpu-box:11434/v1"
    assert remote.payload([], GenerationSettings())["model"] == "llama3.1:8b"
    # An agent's own model wins over the default; the same ref shares one backend.
    agent_model = pool.get("conn:ollama/qwen2.5:7b").backend
    assert agent_model.model_name == "qwen2.5:7b"
    assert pool.get("conn:ollama/qwen2.5:7b").backend is agent_model

    # Testing again rebuilds the connection's backends (a changed key or model list).
    svc.retest("ollama", principal=SYSTEM)
    assert pool.get("conn:ollama/qwen2.5:7b").backend is not agent_model

    # Deleting the connection puts the settings' default back.
    svc.delete("ollama", principal=SYSTEM)
    assert svc.overview(principal=SYSTEM).default is None
    assert pool.get().backend.model_name == "bundled-default"
    with pytest.raises(ValidationError, match="no model connection named 'ollama'"):
        pool.get("conn:ollama/qwen2.5:7b")
    svc.set_default(None, principal=SYSTEM)
    with pytest.raises(ValidationError, match="no model connection"):
        svc.set_default("conn:nothing/x", principal=SYSTEM)


def test_only_an_operator_changes_connections(tmp_path: Path, db: Database) -> None:
    personal = ModelConnections(make_settings(tmp_path), db)
    with pytest.raises(AuthError, match="sign in"):
        personal.add(server_spec(), principal=ANONYMOUS)
    assert personal.is_operator(WALLET)  # a personal install: the signed-in user
    public = ModelConnections(make_settings(tmp_path, host="0.0.0.0"), db)
    with pytest.raises(NotOwnerError, match="ANIMA_ADMIN_ADDRESSES"):
        public.set_default(None, principal=WALLET)
    listed = ModelConnections(
        make_settings(tmp_path, host="0.0.0.0", admin_addresses=WALLET.address.lower()), db
    )
    assert listed.is_operator(WALLET)
    other = Principal(address="0x00000000000000000000000000000000000000B2", via="session")
    with pytest.raises(NotOwnerError):
        listed.delete("x", principal=other)
    assert listed.is_operator(SYSTEM)


def test_names_and_refs_are_checked(svc: ModelConnections) -> None:
    svc.add(server_spec(), principal=SYSTEM)
    with pytest.raises(ConflictError):
        svc.add(server_spec(), principal=SYSTEM)
    for name in ("Bad Name", "../x", "", "-x"):
        with pytest.raises(ValidationError, match="connection name"):
            svc.add(server_spec(name=name), principal=SYSTEM)
    assert check_model_ref("conn:ollama/llama3.1:8b") == "conn:ollama/llama3.1:8b"
    assert check_model_ref("conn:or/meta-llama/llama-3-8b") == "conn:or/meta-llama/llama-3-8b"
    for bad in ("conn:Bad/x", "conn:x/has space", "conn:/x"):
        with pytest.raises(ValidationError):
            check_model_ref(bad)
    with pytest.raises(ValidationError, match="does not list"):
        svc.set_default("conn:ollama/not-served", principal=SYSTEM)
    assert json.loads(svc.overview(principal=SYSTEM).model_dump_json())["default"] is None


def test_load_now_loads_a_known_model_for_an_operator_only(svc: ModelConnections) -> None:
    loaded: list[str] = []
    svc.loader = loaded.append
    svc.add(server_spec(), principal=SYSTEM)
    with pytest.raises(AuthError):
        svc.load("conn:ollama/qwen2.5:7b", principal=ANONYMOUS)
    with pytest.raises(ValidationError, match="does not list"):
        svc.load("conn:ollama/unknown", principal=SYSTEM)
    assert loaded == []  # nothing was loaded for a refused call
    assert svc.load("conn:ollama/qwen2.5:7b", principal=WALLET) >= 0
    assert loaded == ["conn:ollama/qwen2.5:7b"]
