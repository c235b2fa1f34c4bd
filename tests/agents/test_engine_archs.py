"""The llama.cpp engine beyond Llama: Qwen2 and Qwen3 folders, a GGUF with no tokenizer files
beside it, and per-request LoRA on them, each compared token for token with transformers.

The checkpoints are tiny random models built here (two layers, grouped KV heads; Qwen2 with
q/k/v biases and tied embeddings, Qwen3 with q/k norms and its own head size) that share the
bundled model's tokenizer. The engine serves them as float32 GGUFs it converts itself, so
greedy output must equal transformers float32 exactly, not merely start alike.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.llm.engine_source import resolve_engine_model
from agents.llm.gguf_convert import UnsupportedByEngine, convert_lora
from agents.llm.llamacpp_backend import LlamaCppBackend, LlamaCppEngine
from agents.llm.model_source import bundled_gguf_path
from agents.llm.pool import LLMPool
from agents.llm.transformers_backend import TransformersBackend
from agents.schema import GenerationSettings
from core.settings import Settings
from tests.agents.test_llamacpp import STORY, engine_settings
from tests.tiny_models import save_tiny_qwen2, save_tiny_qwen3

pytestmark = pytest.mark.model

GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=24, repetition_penalty=1.0)
BUILDERS: dict[str, Callable[..., Path]] = {"qwen2": save_tiny_qwen2, "qwen3": save_tiny_qwen3}


def _settings(data_dir: Path, cache: Path, model: str, **extra: Any) -> Settings:
    return engine_settings(
        data_dir, cache, model, **{"llm_parallel": 2, "llm_kv_tokens": 2048, **extra}
    )


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    gguf = bundled_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def tiny(
    request: pytest.FixtureRequest, tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, Path]:
    """(architecture, Hugging Face folder, data dir whose ``adapters/lora`` fits the model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    arch = request.param
    folder = BUILDERS[arch](tmp_path_factory.mktemp(f"tiny-{arch}"), tokenizer)
    data = tmp_path_factory.mktemp(f"data-{arch}")
    torch.manual_seed(7)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
        init_lora_weights=False,
    )
    get_peft_model(base, config).save_pretrained(data / "adapters" / "lora")
    return arch, folder, data


@pytest.fixture(scope="module")
def references(tiny: tuple[str, Path, Path], model_cache_dir: Path) -> dict[str | None, str]:
    """transformers float32 greedy replies, without and with the adapter (peft)."""
    _, folder, data = tiny
    settings = _settings(data, model_cache_dir, str(folder), llm_engine="transformers")
    out: dict[str | None, str] = {}
    for adapter in (None, "lora"):
        path = str(data / "adapters" / adapter) if adapter else None
        backend = TransformersBackend(settings, adapter_path=path)
        out[adapter] = backend.complete(STORY, GREEDY).text
        backend.unload()
    assert out[None] != out["lora"]  # the adapter really changes the reply
    return out


@pytest.fixture
def pool(tiny: tuple[str, Path, Path], model_cache_dir: Path) -> Iterator[LLMPool]:
    _, folder, data = tiny
    pool = LLMPool(_settings(data, model_cache_dir, str(folder)))
    yield pool
    for engine in pool._engines.values():
        engine.unload()


def test_folder_is_converted_and_served_with_per_request_lora_equal_to_transformers(
    pool: LLMPool, tiny: tuple[str, Path, Path], references: dict[str | None, str]
) -> None:
    arch = tiny[0]
    base, adapted = pool.get(), pool.get(None, "lora")
    for backend in (base, adapted):
        backend.load()
        assert isinstance(backend.backend, LlamaCppBackend)
        assert backend.backend.engine_name == "llamacpp"  # no fallback for the adapter either
    engine = base.backend.engine
    assert engine.model.config["arch"] == arch
    assert engine.loaded_adapters == ["lora"]
    # Adapter first, then the base on the same engine: the adapter must not leak into it.
    assert adapted.complete(STORY, GREEDY).text == references["lora"]
    assert base.complete(STORY, GREEDY).text == references[None]
    # Both in flight at once.
    streams = [adapted.stream(STORY, GREEDY), base.stream(STORY, GREEDY)]
    assert ["".join(s) for s in streams] == [references["lora"], references[None]]


def test_a_gguf_alone_in_a_folder_is_served_with_its_own_vocabulary(
    pool: LLMPool,
    tiny: tuple[str, Path, Path],
    references: dict[str | None, str],
    model_cache_dir: Path,
    tmp_path: Path,
) -> None:
    """What a user who downloaded one GGUF has: no config.json, no tokenizer files."""
    data = tiny[2]
    converted = resolve_engine_model(pool.settings).gguf
    alone = tmp_path / "my-model"
    alone.mkdir()
    shutil.copy(converted, alone / "model-f32.gguf")
    settings = _settings(data, model_cache_dir, str(alone), llm_engine_format="source")
    model = resolve_engine_model(settings)
    assert model.gguf == alone / "model-f32.gguf"  # served as it is, nothing re-encoded
    assert model.tokenizer_dir.parent == model_cache_dir  # built from the GGUF's metadata
    assert (model.tokenizer_dir / "tokenizer.json").is_file()
    assert not any(alone.glob("*.json"))
    single = LLMPool(settings)
    try:
        backend = single.get()
        backend.load()
        assert backend.backend.engine_name == "llamacpp"
        engine = backend.backend.engine
        assert engine._tokenizer.chat_template  # the GGUF's tokenizer.chat_template
        assert backend.complete(STORY, GREEDY).text == references[None]
        # The .gguf file itself works as the model setting too.
        as_file = resolve_engine_model(
            settings.model_copy(update={"llm_model": str(alone / "model-f32.gguf")})
        )
        assert as_file.gguf == model.gguf and as_file.tokenizer_dir == model.tokenizer_dir
    finally:
        for engine in single._engines.values():
            engine.unload()


def test_adapters_of_architectures_the_converter_does_not_know_are_refused(
    tiny: tuple[str, Path, Path], tmp_path: Path
) -> None:
    """The caller then falls back to transformers for that adapter, with this reason."""
    _, _, data = tiny
    config = {"arch": "gemma", "num_attention_heads": 4, "num_key_value_heads": 2}
    with pytest.raises(UnsupportedByEngine, match="adapters for gemma models"):
        convert_lora(data / "adapters" / "lora", config, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_a_folder_of_an_architecture_the_converter_does_not_know_falls_back_with_a_reason(
    tiny: tuple[str, Path, Path],
    references: dict[str | None, str],
    model_cache_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """transformers still loads it (by ``model_type``); the engine says why it does not."""
    import json

    _, folder, data = tiny
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    config = json.loads((other / "config.json").read_text())
    config["architectures"] = ["MysteryForCausalLM"]
    (other / "config.json").write_text(json.dumps(config))
    settings = _settings(data, model_cache_dir, str(other), llm_engine="auto")
    backend = LlamaCppBackend(LlamaCppEngine(settings))
    with caplog.at_level(logging.WARNING, logger="agents.llm.llamacpp_backend"):
        reply = backend.complete(STORY, GREEDY).text
    assert backend.engine_name == "transformers"
    assert "MysteryForCausalLM" in (backend.fallback_reason or "")
    assert any("the model falls back to the transformers backend" in m for m in caplog.messages)
    assert reply == references[None]
    backend.fallback.unload()
