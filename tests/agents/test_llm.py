"""Language model backends: the real bundled SmolLM2, a tiny local checkpoint, a real SSE server.

The bundled model is converted (once per session, into the shared ``model_cache_dir``) and
loaded once for this module; replies are kept short so the module runs in well under a minute
once the model is cached.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agents.llm.base import LLMBackend, StreamResult
from agents.llm.factory import build_llm
from agents.llm.model_source import resolve_model
from agents.llm.openai_backend import OpenAICompatBackend
from agents.llm.transformers_backend import TransformersBackend, _StopCutter
from agents.schema import ChatMessage, GenerationSettings
from core.errors import BackendError, ValidationError
from core.settings import Settings
from tests.tiny_models import save_tiny_llama

CONVERTED = "smollm2-135m-instruct"
STORY = [
    ChatMessage(role="system", content="You are Luna, a cheerful cat who loves stories."),
    ChatMessage(role="user", content="Tell me a long story about your favourite place to nap."),
]
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=16)


def _settings(data_dir: Path, cache: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "model_cache_dir": cache,
        "llm_backend": "local",
        "llm_model": "bundled:smollm2",
        "llm_gguf_file": None,
        "llm_context_window": None,
        "llm_preload": False,
        "llm_engine": "transformers",  # this module tests that backend; llama.cpp: test_llamacpp
    }
    return Settings(**{**values, **extra})


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> TransformersBackend:
    backend = build_llm(_settings(tmp_path_factory.mktemp("llm-data"), model_cache_dir))
    assert isinstance(backend, TransformersBackend)
    backend.load()
    return backend


# ----- bundled model -------------------------------------------------------------------
@pytest.mark.model
def test_complete_returns_text_and_usage(bundled: TransformersBackend) -> None:
    reply = bundled.complete(STORY, GREEDY)
    assert reply.text.strip()
    assert reply.prompt_tokens > 20  # the system + user turns went through the chat template
    assert 0 < reply.completion_tokens <= GREEDY.max_new_tokens
    assert reply.finish_reason in {"stop", "length"}
    assert bundled.context_window == 8192  # SmolLM2's max_position_embeddings
    assert bundled.count_tokens("hello world") == 2
    assert bundled.model_name == "SmolLM2-135M-Instruct (bundled)"
    assert isinstance(bundled, LLMBackend)


@pytest.mark.model
def test_stream_is_deltas_of_the_deterministic_greedy_reply(bundled: TransformersBackend) -> None:
    result = StreamResult()
    deltas = list(bundled.stream(STORY, GREEDY, result))
    assert len(deltas) >= 3
    assert "".join(deltas) == bundled.complete(STORY, GREEDY).text
    assert result.completion_tokens > 0 and result.prompt_tokens > 0

    sampled = GenerationSettings(temperature=0.9, seed=7, max_new_tokens=12)
    assert bundled.complete(STORY, sampled).text == bundled.complete(STORY, sampled).text


@pytest.mark.model
def test_max_new_tokens_is_respected(bundled: TransformersBackend) -> None:
    reply = bundled.complete(STORY, GREEDY.model_copy(update={"max_new_tokens": 4}))
    assert reply.completion_tokens == 4
    assert reply.finish_reason == "length"


@pytest.mark.model
def test_stop_string_cuts_the_reply_and_ends_generation(bundled: TransformersBackend) -> None:
    full = bundled.complete(STORY, GREEDY).text
    stop = full.split()[2]  # a word a few tokens in
    cut = bundled.complete(STORY, GREEDY.model_copy(update={"stop": [stop]}))
    assert cut.text == full[: full.index(stop)]
    assert stop not in cut.text
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < GREEDY.max_new_tokens  # generation stopped early


def test_stop_cutter_never_emits_part_of_a_stop_string() -> None:
    cutter = _StopCutter(["\nUser:"])
    assert cutter.feed("Hello") == ("Hello", False)
    assert cutter.feed(" there\nUs") == (" there", False)  # "\nUs" held back
    assert cutter.feed("ually") == ("\nUsually", False)  # false alarm: released
    assert cutter.feed("!\nUse") == ("!", False)
    assert cutter.feed("r: hi") == ("", True)
    assert _StopCutter([]).feed("a\nUser:") == ("a\nUser:", False)
    tail = _StopCutter(["END"])
    assert tail.feed("the EN") == ("the ", False)
    assert tail.flush() == "EN"  # the model finished: held-back text is real text


@pytest.mark.model
def test_abandoned_stream_stops_generation_and_frees_the_model(
    bundled: TransformersBackend,
) -> None:
    long = GREEDY.model_copy(update={"max_new_tokens": 400})
    stream = bundled.stream(STORY, long)
    assert next(stream)
    started = time.perf_counter()
    stream.close()  # what a server does when the client disconnects
    assert time.perf_counter() - started < 5  # did not wait for 400 tokens
    assert not any(t.name == "llm-generate" for t in threading.enumerate())

    done: list[str] = []
    worker = threading.Thread(target=lambda: done.append(bundled.complete(STORY, GREEDY).text))
    worker.start()
    worker.join(timeout=60)
    assert done and done[0]


@pytest.mark.model
def test_generation_errors_surface_as_backend_errors(bundled: TransformersBackend) -> None:
    # a prompt longer than the context window is refused before generating
    narrow = TransformersBackend(bundled.settings.model_copy(update={"llm_context_window": 8}))
    narrow._model, narrow._tokenizer = bundled._model, bundled._tokenizer
    with pytest.raises(BackendError, match="context window is 8"):
        narrow.complete(STORY, GREEDY)
    # an exception inside the generation thread reaches the consumer, and the lock is freed
    with pytest.raises(BackendError, match="generation failed"):
        bundled.complete(STORY, GREEDY.model_copy(update={"top_k": -1, "temperature": 0.5}))
    assert bundled.complete(STORY, GREEDY).text


@pytest.mark.model
def test_bundled_model_is_cached_as_safetensors(
    bundled: TransformersBackend, model_cache_dir: Path, tmp_path: Path
) -> None:
    folder = model_cache_dir / CONVERTED
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").stat().st_size > 100_000_000
    assert (folder / "tokenizer.json").is_file()
    assert not [p for p in model_cache_dir.iterdir() if p.name.startswith(f".{CONVERTED}-")]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    again = TransformersBackend(_settings(tmp_path, model_cache_dir))
    assert resolve_model(again.settings).path == str(folder)
    again.load()
    assert again.complete(STORY, GREEDY).text == bundled.complete(STORY, GREEDY).text


# ----- a local checkpoint built here ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(bundled: TransformersBackend, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer, saved like any model."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), bundled._tokenizer)


@pytest.mark.model
def test_local_directory_model_loads_from_the_environment(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANIMA_LLM_MODEL", str(tiny_dir))
    monkeypatch.setenv("ANIMA_LLM_BACKEND", "local")
    monkeypatch.setenv("ANIMA_LLM_ENGINE", "transformers")
    monkeypatch.setenv("ANIMA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ANIMA_LLM_CONTEXT_WINDOW", raising=False)
    backend = build_llm(Settings())
    assert isinstance(backend, TransformersBackend)
    assert backend.model_name == tiny_dir.name
    reply = backend.complete(STORY, GenerationSettings(temperature=0, max_new_tokens=6))
    assert reply.completion_tokens >= 1
    assert backend.context_window == 512
    assert not (tmp_path / "models").exists()  # a transformers folder is used in place


@pytest.mark.model
def test_lora_adapter_is_applied(tiny_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    settings = _settings(tmp_path, tmp_path / "models", llm_model=str(tiny_dir))
    plain = TransformersBackend(settings)
    adapted = TransformersBackend(settings, adapter_path=str(tmp_path / "adapter"))
    params = GenerationSettings(temperature=0, max_new_tokens=8, repetition_penalty=1.0)
    adapted.load()
    assert isinstance(adapted._model, PeftModel)
    assert adapted.model_name.endswith("+ adapter")
    assert adapted.complete(STORY, params).text != plain.complete(STORY, params).text


# ----- where models come from: failures ------------------------------------------------
def test_model_source_errors_tell_the_user_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    with pytest.raises(BackendError, match="does not exist"):
        resolve_model(_settings(tmp_path, tmp_path, llm_model=str(tmp_path / "missing")))
    with pytest.raises(BackendError, match="unknown bundled model"):
        resolve_model(_settings(tmp_path, tmp_path, llm_model="bundled:nope"))

    (tmp_path / "ggufonly").mkdir()
    (tmp_path / "ggufonly" / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "ggufonly" / "n.gguf").write_bytes(b"GGUF")
    # Two GGUFs and no config.json: which one is meant? (A lone GGUF is simply loaded.)
    with pytest.raises(BackendError, match=r"m\.gguf, n\.gguf: set ANIMA_LLM_GGUF_FILE"):
        resolve_model(_settings(tmp_path, tmp_path, llm_model=str(tmp_path / "ggufonly")))
    with pytest.raises(BackendError, match=r"GGUF file other\.gguf not found"):
        resolve_model(
            _settings(
                tmp_path, tmp_path, llm_model=str(tmp_path / "ggufonly"), llm_gguf_file="other.gguf"
            )
        )

    broken = _settings(
        tmp_path, tmp_path / "cache", llm_model=str(tmp_path / "ggufonly"), llm_gguf_file="m.gguf"
    )
    with pytest.raises(BackendError, match=r"could not convert GGUF model .*m\.gguf"):
        resolve_model(broken)
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert leftovers == []  # no half-written model folder left behind

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.HF_HUB_OFFLINE", True, raising=False)
    backend = TransformersBackend(_settings(tmp_path, tmp_path, llm_model="anima-test/not-cached"))
    with pytest.raises(BackendError) as info:
        backend.load()
    assert "model anima-test/not-cached not found locally and the network is offline" in str(
        info.value
    )
    assert "ANIMA_LLM_MODEL" in str(info.value)


# ----- OpenAI-compatible server --------------------------------------------------------
class _SSEHandler(BaseHTTPRequestHandler):
    """A minimal OpenAI-style chat server; ``model`` in the request picks its behaviour."""

    requests: list[dict[str, Any]]
    disconnected: threading.Event

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(
            {"path": self.path, "body": body, "auth": self.headers["Authorization"]}
        )
        model = body["model"]
        if model == "broken":
            self._reply(500, b'{"error": {"message": "model exploded"}}', "application/json")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            if model == "garbage":
                self._event("{not json")
            elif model == "endless":
                for i in range(2000):
                    self._event(json.dumps({"choices": [{"delta": {"content": f"w{i} "}}]}))
                    time.sleep(0.01)
            else:
                self.wfile.write(b": keep-alive\n\n")
                self._event(json.dumps({"choices": [{"delta": {"role": "assistant"}}]}))
                for text in ["Hel", "lo", " there"]:
                    self._event(json.dumps({"choices": [{"delta": {"content": text}}]}))
                finish = {"delta": {}, "finish_reason": "length"}
                self._event(json.dumps({"choices": [finish]}))
                if model != "no-usage":
                    usage = {"prompt_tokens": 11, "completion_tokens": 3}
                    self._event(json.dumps({"choices": [], "usage": usage}))
                self._event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            self.disconnected.set()

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _reply(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def sse_server() -> Iterator[tuple[str, type[_SSEHandler]]]:
    handler = type("Handler", (_SSEHandler,), {"requests": [], "disconnected": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()
    server.server_close()


def _openai(tmp_path: Path, base_url: str, model: str = "served-model") -> OpenAICompatBackend:
    settings = _settings(
        tmp_path,
        tmp_path,
        llm_backend="openai",
        openai_base_url=base_url,
        openai_model=model,
        openai_api_key="sk-test",
        openai_timeout_s=10.0,
    )
    backend = build_llm(settings)
    assert isinstance(backend, OpenAICompatBackend)
    return backend


def test_openai_backend_streams_sse_deltas(
    sse_server: tuple[str, type[_SSEHandler]], tmp_path: Path
) -> None:
    url, handler = sse_server
    backend = _openai(tmp_path, url)
    params = GenerationSettings(temperature=0.5, max_new_tokens=42, seed=3, stop=["\nUser:"])
    result = StreamResult()
    assert list(backend.stream(STORY, params, result)) == ["Hel", "lo", " there"]
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (
        11,
        3,
        "length",
    )
    sent = handler.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["auth"] == "Bearer sk-test"
    body = sent["body"]
    assert body["model"] == "served-model" and body["stream"] is True
    assert body["max_tokens"] == 42 and body["seed"] == 3 and body["stop"] == ["\nUser:"]
    assert body["messages"][1] == {"role": "user", "content": STORY[1].content}
    assert backend.complete(STORY, params).text == "Hello there"
    assert backend.context_window == 4096 and backend.model_name == "served-model"
    assert backend.count_tokens("12345678") == 2


def test_openai_backend_estimates_usage_when_the_server_sends_none(
    sse_server: tuple[str, type[_SSEHandler]], tmp_path: Path
) -> None:
    reply = _openai(tmp_path, sse_server[0], "no-usage").complete(STORY, GREEDY)
    assert reply.text == "Hello there"
    assert reply.completion_tokens == 3  # 11 characters at ~4 per token
    assert reply.prompt_tokens > 0


def test_openai_backend_failures_are_backend_errors(
    sse_server: tuple[str, type[_SSEHandler]], tmp_path: Path
) -> None:
    url = sse_server[0]
    with pytest.raises(BackendError, match=r"answered HTTP 500.*model exploded"):
        _openai(tmp_path, url, "broken").complete(STORY, GREEDY)
    with pytest.raises(BackendError, match="malformed stream chunk"):
        _openai(tmp_path, url, "garbage").complete(STORY, GREEDY)

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    with pytest.raises(BackendError, match=r"LLM server at .* unreachable"):
        _openai(tmp_path, dead).complete(STORY, GREEDY)


def test_openai_backend_closes_the_connection_when_the_reader_stops(
    sse_server: tuple[str, type[_SSEHandler]], tmp_path: Path
) -> None:
    url, handler = sse_server
    stream = _openai(tmp_path, url, "endless").stream(STORY, GREEDY)
    assert next(stream) == "w0 "
    stream.close()
    assert handler.disconnected.wait(timeout=10)  # the server saw the client go away


# ----- what an agent may name ----------------------------------------------------------
@pytest.mark.model
def test_agent_model_and_adapter_resolve_inside_the_data_dir(
    tiny_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from agents.llm.pool import LLMPool

    settings = _settings(tmp_path / "data", tmp_path / "data" / "models")
    settings.ensure_dirs()
    shutil.copytree(tiny_dir, settings.models_dir / "tiny")
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(settings.adapters_dir / "style")

    pool = LLMPool(settings)
    scheduled = pool.get("tiny", "style")
    backend = scheduled.backend
    assert isinstance(backend, TransformersBackend)
    backend.load()
    assert isinstance(backend._model, PeftModel)
    assert backend.settings.llm.model == str((settings.models_dir / "tiny").resolve())
    assert pool.get("tiny", "style") is scheduled  # loaded once, shared
    reply = backend.complete(STORY, GenerationSettings(temperature=0, max_new_tokens=4))
    assert reply.completion_tokens >= 1


@pytest.mark.parametrize(
    ("model", "adapter"),
    [("/etc", None), ("../models", None), ("a/b/c", None), (None, "../x"), (None, "/tmp/x")],
)
def test_agent_cannot_name_paths_outside_the_data_dir(
    tmp_path: Path, model: str | None, adapter: str | None
) -> None:
    from agents.llm.pool import LLMPool

    pool = LLMPool(_settings(tmp_path, tmp_path / "models"))
    with pytest.raises(ValidationError):
        pool.get(model, adapter)


@pytest.mark.model
def test_least_recently_used_idle_model_is_unloaded(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    from agents.llm.pool import LLMPool

    settings = _settings(tmp_path / "data", tmp_path / "data" / "models", llm_max_models=1)
    settings.ensure_dirs()
    for name in ("one", "two"):
        shutil.copytree(tiny_dir, settings.models_dir / name)
    pool = LLMPool(settings)
    params = GenerationSettings(temperature=0, max_new_tokens=2)
    one = pool.get("one")
    assert one.complete(STORY, params).completion_tokens >= 1
    assert one.is_loaded
    two = pool.get("two")  # a second base model: the idle first one makes room
    assert not one.is_loaded
    assert two.complete(STORY, params).completion_tokens >= 1
    assert pool.get("one").complete(STORY, params).completion_tokens >= 1  # back on demand
    assert not two.is_loaded
