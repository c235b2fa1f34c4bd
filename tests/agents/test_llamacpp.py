"""The llama.cpp engine with real weights: per-request LoRA, adapter-aware prefix cache,
conversion caching, fallback and eviction.

The engine here serves a float32 GGUF that it converts itself from the bundled model's
safetensors folder (a local Hugging Face directory), so its greedy output can be compared
token for token with the transformers backend at the same precision. The adapters are tiny
random peft LoRAs (r=8 on q/k/v/o) made here, strong enough that base, A and B answer
visibly differently.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.llm.engine_source import adapter_gguf, resolve_engine_model
from agents.llm.llamacpp_backend import LlamaCppBackend
from agents.llm.model_source import resolve_model
from agents.llm.pool import LLMPool
from agents.llm.transformers_backend import TransformersBackend
from agents.schema import ChatMessage, GenerationSettings
from core.errors import BackendError
from core.settings import Settings

pytestmark = pytest.mark.model

STORY = [
    ChatMessage(role="system", content="You are Luna, a cheerful cat who loves stories."),
    ChatMessage(role="user", content="Tell me a long story about your favourite place to nap."),
]
GREEDY32 = GenerationSettings(temperature=0.0, max_new_tokens=32, repetition_penalty=1.0)


def engine_settings(data_dir: Path, cache: Path, model: str, **extra: Any) -> Settings:
    """Settings for the llama.cpp engine in f32 (greedy output comparable with transformers)."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "model_cache_dir": cache,
        "llm_backend": "local",
        "llm_model": model,
        "llm_gguf_file": None,
        "llm_context_window": None,
        "llm_preload": False,
        "llm_engine": "llamacpp",
        "llm_engine_format": "f32",
        "llm_parallel": 4,
        "llm_kv_tokens": 4096,
        "llm_dtype": "float32",
    }
    return Settings(**{**values, **extra})


@pytest.fixture(scope="module")
def hf_dir(model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model as a local Hugging Face folder (converted once per session)."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hf"), model_cache_dir=model_cache_dir, llm_preload=False
    )
    return Path(resolve_model(settings).path)


@pytest.fixture(scope="module")
def data_dir(hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose ``adapters/`` holds LoRAs ``a`` and ``b`` and a DoRA ``dora``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("engine-data")
    for name, seed, dora in (("a", 1, False), ("b", 2, False), ("dora", 3, True)):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        config = LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
            use_dora=dora,
        )
        get_peft_model(base, config).save_pretrained(root / "adapters" / name)
    return root


@pytest.fixture(scope="module")
def references(hf_dir: Path, data_dir: Path, model_cache_dir: Path) -> dict[str | None, str]:
    """Greedy replies of the transformers backend (float32, peft) for base, a and b."""
    out: dict[str | None, str] = {}
    for adapter in (None, "a", "b"):
        settings = engine_settings(
            data_dir, model_cache_dir, str(hf_dir), llm_engine="transformers"
        )
        path = str(data_dir / "adapters" / adapter) if adapter else None
        backend = TransformersBackend(settings, adapter_path=path)
        out[adapter] = backend.complete(STORY, GREEDY32).text
        backend.unload()
    assert len(set(out.values())) == 3, out  # the adapters really change the reply
    return out


@pytest.fixture(scope="module")
def pool(hf_dir: Path, data_dir: Path, model_cache_dir: Path) -> Iterator[LLMPool]:
    pool = LLMPool(engine_settings(data_dir, model_cache_dir, str(hf_dir)))
    yield pool
    for engine in pool._engines.values():
        engine.unload()


def test_engine_equals_transformers_and_adapters_in_flight_together_keep_their_own(
    pool: LLMPool, references: dict[str | None, str]
) -> None:
    backends = {name: pool.get(None, name) for name in (None, "a", "b")}
    for backend in backends.values():
        backend.load()
        assert isinstance(backend.backend, LlamaCppBackend)
        assert backend.backend.engine_name == "llamacpp"
    assert sorted(backends[None].backend.engine.loaded_adapters) == ["a", "b"]

    # One at a time: float32 GGUF converted here == transformers float32, 32 greedy tokens.
    for name, backend in backends.items():
        assert backend.complete(STORY, GREEDY32).text == references[name], name

    # All at once, twice each, in one engine: each request keeps its own adapter.
    order = [None, "a", "b", "a", None, "b"]
    lane = pool.scheduler.lane(backends[None].backend.engine, 4)
    lane.peak = 0
    tickets = [backends[name].stream(STORY, GREEDY32) for name in order]
    texts = ["".join(ticket) for ticket in tickets]
    assert lane.peak == 4  # four sequences were decoding at the same time
    assert texts == [references[name] for name in order]


def test_prefix_cache_is_reused_within_an_adapter_and_never_across(
    hf_dir: Path, data_dir: Path, model_cache_dir: Path, references: dict[str | None, str]
) -> None:
    """One slot, so every request lands on the KV the previous one left behind."""
    from agents.llm.base import StreamResult

    pool = LLMPool(engine_settings(data_dir, model_cache_dir, str(hf_dir), llm_parallel=1))
    try:

        def run(adapter: str | None) -> tuple[str, int]:
            result = StreamResult()
            text = "".join(pool.get(None, adapter).stream(STORY, GREEDY32, result))
            return text, result.cached_tokens

        text, cached = run("a")
        assert text == references["a"] and cached == 0
        text, cached = run(None)  # same prompt, KV cached under "a": must not be reused
        assert text == references[None] and cached == 0
        text, cached = run(None)  # same adapter (none): the prompt's KV is reused
        assert text == references[None] and cached > 20
        text, cached = run("b")
        assert text == references["b"] and cached == 0
        # Push the story out of the slot with another prompt, then ask it again without an
        # adapter: llama.cpp's RAM prompt cache would restore the KV computed under "b".
        other = [STORY[0], ChatMessage(role="user", content="What is the capital of France?")]
        "".join(pool.get(None, None).stream(other, GREEDY32))
        text, _ = run(None)
        assert text == references[None]
    finally:
        for engine in pool._engines.values():
            engine.unload()


def test_two_chats_sharing_a_system_prompt_keep_their_own_slots(
    hf_dir: Path, data_dir: Path, model_cache_dir: Path
) -> None:
    """Chats that share only the system prompt used to evict each other every turn (the
    other chat's slot looked like the best prefix match): each re-read its whole history."""
    from agents.llm.base import StreamResult

    pool = LLMPool(engine_settings(data_dir, model_cache_dir, str(hf_dir), llm_parallel=2))
    system = STORY[0]
    chats: dict[str, list[ChatMessage]] = {
        "short": [system],
        "long": [
            system,
            *[ChatMessage(role="user", content=f"Line {i} of the log.") for i in range(40)],
        ],
    }
    try:
        cached: dict[str, list[tuple[int, int]]] = {"short": [], "long": []}
        for turn in range(3):
            for name, history in chats.items():
                history.append(ChatMessage(role="user", content=f"Question {turn}?"))
                result = StreamResult()
                text = "".join(pool.get().stream(history, GREEDY32, result))
                history.append(ChatMessage(role="assistant", content=text or "..."))
                cached[name].append((result.prompt_tokens, result.cached_tokens))
        # The long chat keeps its slot from its first turn on; the short one may lose its
        # few cached tokens once (cheap to recompute), then keeps its own slot too.
        long, short = cached["long"], cached["short"]
        pairs = list(itertools.pairwise(long))
        assert pairs and all(now[1] >= before[0] - 2 for before, now in pairs), long
        assert short[2][1] >= short[1][0] - 2, short
    finally:
        for engine in pool._engines.values():
            engine.unload()


def test_conversions_are_made_once_and_cached(
    pool: LLMPool, hf_dir: Path, data_dir: Path, model_cache_dir: Path
) -> None:
    pool.get().load()
    settings = pool.settings
    model = resolve_engine_model(settings)
    assert model.gguf.parent == model_cache_dir and model.gguf.name.endswith("-f32.gguf")
    stamp = model.gguf.stat().st_mtime_ns
    lora = adapter_gguf(settings, model, data_dir / "adapters" / "a")
    lora_stamp = lora.stat().st_mtime_ns
    again = resolve_engine_model(settings)
    assert again.gguf == model.gguf and again.gguf.stat().st_mtime_ns == stamp
    assert adapter_gguf(settings, model, data_dir / "adapters" / "a").stat().st_mtime_ns == (
        lora_stamp
    )
    leftovers = [
        p.name
        for p in model_cache_dir.rglob(".*")
        if ".locks" not in p.parts and not p.name.endswith(".lock")
    ]
    assert leftovers == []  # nothing half-written

    # The bundled GGUF is served as shipped; only its tokenizer is saved (once).
    bundled = resolve_engine_model(
        settings.model_copy(update={"llm_model": "bundled:smollm2", "llm_engine_format": "source"})
    )
    assert bundled.gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (bundled.tokenizer_dir / "tokenizer.json").is_file()
    assert bundled.config == {"arch": "llama", "num_attention_heads": 9, "num_key_value_heads": 3}


def test_an_adapter_the_engine_cannot_serve_falls_back_to_transformers(
    pool: LLMPool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agents.llm.llamacpp_backend"):
        backend = pool.get(None, "dora")
        reply = backend.complete(STORY, GREEDY32.model_copy(update={"max_new_tokens": 4}))
    assert reply.text.strip()
    assert isinstance(backend.backend.fallback, TransformersBackend)
    assert "DoRA" in (backend.backend.fallback_reason or "")
    assert any("adapter dora falls back to the transformers backend" in m for m in caplog.messages)
    assert "dora" not in backend.backend.engine.loaded_adapters
    backend.backend.fallback.unload()


def test_least_recently_used_adapters_leave_within_the_memory_budget(
    hf_dir: Path, data_dir: Path, model_cache_dir: Path, references: dict[str | None, str]
) -> None:
    settings = engine_settings(
        data_dir, model_cache_dir, str(hf_dir), llm_adapter_budget_mb=5, llm_parallel=2
    )
    pool = LLMPool(settings)
    try:
        a, b = pool.get(None, "a"), pool.get(None, "b")
        engine = a.backend.engine
        assert a.complete(STORY, GREEDY32).text == references["a"]
        assert engine.loaded_adapters == ["a"]
        # b while a streams: the swap starts a new server; a's request finishes on the old one
        stream = a.stream(STORY, GREEDY32)
        first = next(stream)
        assert b.complete(STORY, GREEDY32).text == references["b"]
        assert engine.loaded_adapters == ["b"]  # a (3.7 MB) left: the budget holds one
        assert first + "".join(stream) == references["a"]
        assert a.complete(STORY, GREEDY32).text == references["a"]  # loaded again on demand
        assert engine.loaded_adapters == ["a"]
        assert not [t for t in threading.enumerate() if t.name == "llamacpp-request"]
    finally:
        for engine in pool._engines.values():
            engine.unload()
    assert os.path.isdir(data_dir / "adapters" / "a")  # nothing of the user's was touched


@pytest.fixture
def bundled_pool(data_dir: Path, model_cache_dir: Path) -> Iterator[LLMPool]:
    """The shipped Q4_1 GGUF on the local engine (its own tokenizer metadata, unlike the
    float32 file converted above, so a server that tokenizes by itself agrees with it)."""
    pool = LLMPool(
        engine_settings(
            data_dir, model_cache_dir, "bundled:smollm2", llm_engine_format="source", llm_parallel=1
        )
    )
    yield pool
    for engine in pool._engines.values():
        engine.unload()


@pytest.fixture
def llama_server(bundled_pool: LLMPool, data_dir: Path) -> Iterator[tuple[str, str]]:
    """A real OpenAI-compatible server on 127.0.0.1: llama.cpp (xllamacpp) serving the model
    with adapter ``a`` under the name ``a``, as vLLM's ``--lora-modules a=...`` would."""
    import xllamacpp as xlc

    settings = bundled_pool.settings
    model = resolve_engine_model(settings)
    lora = adapter_gguf(settings, model, data_dir / "adapters" / "a")
    params = xlc.CommonParams()
    params.model.path = str(model.gguf)
    params.lora_adapters = [xlc.CommonAdapterLoraInfo(str(lora), 1.0)]
    params.model_alias = ["smollm2", "a"]
    params.api_keys = ["sk-test"]
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.n_parallel = 1
    params.n_ctx = 2048
    params.cpuparams.n_threads = 1
    params.verbosity = -1
    server = xlc.Server(params)
    yield f"{server.listening_address}/v1", "sk-test"
    del server


def test_openai_backend_sends_the_agent_adapter_as_the_model_to_a_real_server(
    llama_server: tuple[str, str], bundled_pool: LLMPool
) -> None:
    from agents.llm.base import StreamResult
    from agents.llm.openai_backend import OpenAICompatBackend

    local = bundled_pool.get(None, "a").complete(STORY, GREEDY32).text  # same weights, here
    url, key = llama_server
    settings = bundled_pool.settings.model_copy(
        update={
            "llm_backend": "openai",
            "openai_base_url": url,
            "openai_api_key": key,
            "openai_model": "smollm2",
            "llm_context_window": 2048,
        }
    )
    pool = LLMPool(settings)
    backend = pool.get(None, "a")  # an agent whose adapter is "a"
    assert isinstance(backend.backend, OpenAICompatBackend)
    assert backend.backend.payload(STORY, GREEDY32)["model"] == "a"
    result = StreamResult()
    text = "".join(backend.stream(STORY, GREEDY32, result))
    assert result.model == "a"  # the server answered as the adapter's model
    assert text == local  # and with the adapter's reply, token for token
    assert result.completion_tokens > 0 and result.prompt_tokens > 20

    wrong = OpenAICompatBackend(settings.model_copy(update={"openai_api_key": "nope"}))
    with pytest.raises(BackendError, match="HTTP 401"):
        wrong.complete(STORY, GREEDY32)
