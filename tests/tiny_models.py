"""Tiny randomly initialised checkpoints that tests build instead of downloading one."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_tiny_llama(path: Path, tokenizer: Any, seed: int = 0) -> Path:
    """Save a 2-layer Llama (hidden 32) with ``tokenizer`` to ``path``, like any local model.

    Small enough to build in a second, real enough to go through every loading path (HF folder,
    GGUF conversion, base-model fingerprints); its replies are noise, which is the point when a
    test needs "another base model".
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _save(path: Path, model_cls: Any, config: Any, tokenizer: Any, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    model = model_cls(config)
    # Random init draws weights near zero, which makes every logit nearly equal and greedy
    # decoding a coin toss between engines; wider weights give clear winners.
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 2:
                param.normal_(0.0, 0.25)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _shared(tokenizer: Any) -> dict[str, Any]:
    return {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 512,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def save_tiny_qwen2(path: Path, tokenizer: Any, seed: int = 0) -> Path:
    """A 2-layer Qwen2 (biases on q/k/v, grouped KV heads, tied embeddings) with ``tokenizer``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**_shared(tokenizer), tie_word_embeddings=True, use_sliding_window=False)
    return _save(path, Qwen2ForCausalLM, config, tokenizer, seed)


def save_tiny_qwen3(path: Path, tokenizer: Any, seed: int = 0) -> Path:
    """A 2-layer Qwen3 (RMS norms on q and k, no biases, a head size of its own) with
    ``tokenizer``."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        **_shared(tokenizer), head_dim=32, tie_word_embeddings=False, use_sliding_window=False
    )
    return _save(path, Qwen3ForCausalLM, config, tokenizer, seed)
