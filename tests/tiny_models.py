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
