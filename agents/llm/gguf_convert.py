"""Write what the llama.cpp engine loads: GGUF models and GGUF LoRA adapters.

Anima trains adapters with peft (safetensors) and may be pointed at a local Hugging Face
model folder; llama.cpp reads neither. No pip package converts them, so the two writers are
here, on the ``gguf`` library llama.cpp itself publishes; its ``TensorNameMap`` gives every
Hugging Face tensor its llama.cpp name. They cover the architectures in ``ARCHS``: the Llama
family (SmolLM2, Llama 2/3, TinyLlama, Mistral-style models without sliding windows), Qwen2 /
Qwen2.5 and Qwen3. Anything else raises ``UnsupportedByEngine`` and the caller falls
back to the transformers backend, saying why. (A GGUF file of any architecture llama.cpp
knows needs no converter: the engine serves it as it is.)

The one subtle step: for the Llama family only, llama.cpp's own converter permutes the rows
of ``q_proj`` and ``k_proj``, because llama.cpp applies rotary embeddings to interleaved pairs
there while Hugging Face rotates two halves. A model's Q/K weights and an adapter's ``lora_B``
for Q/K must get the same permutation, or outputs drift silently. ``lora_A`` is untouched (it
maps the input side, which is not permuted). Qwen2 and Qwen3 use the "neox" rotary
layout in llama.cpp, which is Hugging Face's own: their weights are copied as they are.

Callers write into a temporary path and rename (``agents/llm/model_source.py`` does the
locking and caching).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

# Hugging Face architecture -> llama.cpp architecture (``general.architecture``).
ARCHS = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
LLAMA_ARCHS = {hf for hf, arch in ARCHS.items() if arch == "llama"}
# llama.cpp architectures whose Q/K rows its converter permutes (see the module docstring).
PERMUTED_QK = {"llama"}
# Architectures whose adapters ``convert_lora`` writes: the permutation above is known for them.
LORA_ARCHS = {"llama", "qwen2", "qwen3"}
# llama.cpp tensors inside ``blk.N.`` that a LoRA may adapt (the linear projections).
_LORA_TARGETS = {
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
}
_LAYER_KEY = re.compile(r"^(.*?layers\.(\d+)\..+?)\.(lora_[AB])(?:\.default)?\.weight$")


class UnsupportedByEngine(Exception):
    """The engine cannot serve this model or adapter; the message says why."""


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's rotary layout (two halves per head) to llama.cpp's (interleaved pairs)."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedByEngine(f"no readable config.json in {folder}: {exc}") from exc


def _heads(config: dict[str, Any]) -> tuple[int, int]:
    n_head = int(config["num_attention_heads"])
    return n_head, int(config.get("num_key_value_heads") or n_head)


def engine_arch(config: dict[str, Any], what: str) -> str:
    """The llama.cpp architecture of a Hugging Face ``config.json``, if this module converts it."""
    archs = list(config.get("architectures") or [])
    known = [ARCHS[a] for a in archs if a in ARCHS]
    if not known:
        raise UnsupportedByEngine(
            f"{what} is {', '.join(sorted(archs)) or 'of an unknown architecture'}; the "
            f"llama.cpp engine here converts {', '.join(sorted(ARCHS))} folders (or serve a "
            "GGUF file of it)"
        )
    # Qwen2 configs carry a window size even when it is switched off.
    if config.get("use_sliding_window", True) and config.get("sliding_window"):
        raise UnsupportedByEngine(f"{what} uses a sliding attention window")
    return known[0]


def _check_convertible(config: dict[str, Any], what: str) -> str:
    """``engine_arch``, after refusing what the writer below does not express."""
    arch = engine_arch(config, what)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise UnsupportedByEngine(f"{what} uses rope scaling, which this converter does not write")
    return arch


def _rope_theta(config: dict[str, Any]) -> float:
    """transformers 5 keeps it in ``rope_parameters``; older configs at the top level."""
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)


# ----- LoRA adapters -------------------------------------------------------------------
def convert_lora(adapter_dir: Path, base_config: dict[str, Any], out_file: Path) -> None:
    """Write the peft LoRA in ``adapter_dir`` as a GGUF LoRA for its base model.

    ``base_config`` describes the base model as the engine serves it: ``arch`` (llama.cpp's
    architecture name, ``llama`` when absent), ``num_attention_heads`` and
    ``num_key_value_heads`` (for the Llama family's Q/K permutation). Scale 1.0 in a request
    then equals peft's ``lora_alpha / r``: llama.cpp multiplies by ``alpha / rank`` itself.
    """
    import gguf
    from safetensors.numpy import load_file

    arch = str(base_config.get("arch") or "llama")
    if arch not in LORA_ARCHS:
        raise UnsupportedByEngine(
            f"{adapter_dir.name}: adapters for {arch} models are not converted for the engine "
            f"(known: {', '.join(sorted(LORA_ARCHS))})"
        )
    try:
        peft_config = json.loads((adapter_dir / "adapter_config.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedByEngine(f"{adapter_dir.name}: no readable adapter_config.json") from exc
    _check_lora_config(adapter_dir.name, peft_config)
    weights_file = adapter_dir / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise UnsupportedByEngine(f"{adapter_dir.name}: no adapter_model.safetensors")
    n_head, n_head_kv = _heads(base_config)
    tensors = load_file(str(weights_file))
    names = _name_map(arch, tensors)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        match = _LAYER_KEY.search(key)
        name = names.get_name(_hf_module(match.group(1))) if match else None
        if not match or name is None or name.split(".")[-1] not in _LORA_TARGETS:
            raise UnsupportedByEngine(f"{adapter_dir.name}: adapter tensor {key} is not supported")
        pairs.setdefault(name, {})[match.group(3)] = value.astype(np.float32)

    writer = gguf.GGUFWriter(str(out_file), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(peft_config.get("lora_alpha") or 8))
    for name, parts in sorted(pairs.items()):
        if set(parts) != {"lora_A", "lora_B"}:
            raise UnsupportedByEngine(f"{adapter_dir.name}: {name} is incomplete")
        lora_b = parts["lora_B"]
        if arch in PERMUTED_QK and name.endswith(".attn_q"):
            lora_b = permute_rows(lora_b, n_head)
        elif arch in PERMUTED_QK and name.endswith(".attn_k"):
            lora_b = permute_rows(lora_b, n_head_kv)
        writer.add_tensor(f"{name}.weight.lora_a", np.ascontiguousarray(parts["lora_A"]))
        writer.add_tensor(f"{name}.weight.lora_b", np.ascontiguousarray(lora_b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _hf_module(peft_path: str) -> str:
    """peft's ``base_model.model.model.layers.0.mlp.up_proj`` -> ``model.layers.0.mlp.up_proj``."""
    return "model." + peft_path[peft_path.index("layers.") :]


def _name_map(arch: str, tensors: Any) -> Any:
    """The ``gguf`` package's Hugging Face -> llama.cpp tensor names for ``arch``."""
    import gguf

    layers = [int(m.group(1)) for m in map(re.compile(r"layers\.(\d+)\.").search, tensors) if m]
    kind = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    return gguf.get_tensor_name_map(kind, max(layers, default=0) + 1)


def _check_lora_config(name: str, config: dict[str, Any]) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise UnsupportedByEngine(f"{name}: {config.get('peft_type')} adapters are not LoRA")
    for flag, why in (
        ("use_dora", "DoRA"),
        ("use_rslora", "rank-stabilised LoRA scaling"),
        ("modules_to_save", "fully trained extra modules (modules_to_save)"),
        ("layer_replication", "layer replication"),
    ):
        if config.get(flag):
            raise UnsupportedByEngine(f"{name}: uses {why}, which llama.cpp adapters cannot hold")
    if config.get("bias", "none") != "none":
        raise UnsupportedByEngine(f"{name}: trains biases (bias={config['bias']!r})")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise UnsupportedByEngine(f"{name}: per-module ranks or alphas are not supported")


# ----- whole models ---------------------------------------------------------------------
def convert_model(model_dir: Path, out_file: Path, dtype: str = "f16") -> None:
    """Write the safetensors model in ``model_dir`` (an ``ARCHS`` architecture) as one GGUF.

    ``dtype`` is ``f32`` (bit-exact with transformers in float32), ``f16`` or ``q8_0``
    (embedding and 2-D projection weights only; norms and biases stay float32 as llama.cpp
    expects).
    """
    import gguf

    config = _read_config(model_dir)
    arch = _check_convertible(config, model_dir.name)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UnsupportedByEngine(f"{model_dir.name}: no .safetensors weights")
    qtype = {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
    }[dtype]
    writer = gguf.GGUFWriter(str(out_file), arch)
    writer.add_name(model_dir.name)
    _add_hparams(writer, config)
    writer.add_file_type(
        {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}.get(
            dtype, gguf.LlamaFileType.MOSTLY_Q8_0
        )
    )
    _add_tokenizer(writer, model_dir, int(config["vocab_size"]))
    seen = _add_weights(writer, files, config, arch, qtype)
    if "token_embd.weight" not in seen:
        raise UnsupportedByEngine(f"{model_dir.name}: no embed_tokens weight found")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_hparams(writer: Any, config: dict[str, Any]) -> None:
    n_head, n_head_kv = _heads(config)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_head)
    rope = config.get("rope_parameters") or {}
    partial = float(rope.get("partial_rotary_factor") or config.get("partial_rotary_factor") or 1)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(int(head_dim * partial))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    eps = config.get("rms_norm_eps") or config.get("layer_norm_epsilon") or 1e-5
    writer.add_layer_norm_rms_eps(float(eps))
    writer.add_vocab_size(int(config["vocab_size"]))


def _add_weights(
    writer: Any, files: list[Path], config: dict[str, Any], arch: str, qtype: Any
) -> set[str]:
    """Every tensor under its llama.cpp name; returns the names written."""
    import gguf
    from safetensors import safe_open

    n_head, n_head_kv = _heads(config)
    names = gguf.get_tensor_name_map(
        next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch),
        int(config["num_hidden_layers"]),
    )
    seen: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.endswith("rotary_emb.inv_freq"):
                    continue
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise UnsupportedByEngine(f"weight {key} has no llama.cpp counterpart")
                data = handle.get_tensor(key).astype(np.float32)
                if arch in PERMUTED_QK and name.endswith("attn_q.weight"):
                    data = permute_rows(data, n_head)
                elif arch in PERMUTED_QK and name.endswith("attn_k.weight"):
                    data = permute_rows(data, n_head_kv)
                _add_weight(writer, name, data, qtype)
                seen.add(name)
    return seen


def _add_weight(writer: Any, name: str, data: np.ndarray, qtype: Any) -> None:
    import gguf

    if data.ndim == 2 and qtype == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(name, data.astype(np.float16))
    elif data.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
        quant = gguf.quants.quantize(data, qtype)
        writer.add_tensor(name, quant, raw_shape=quant.shape, raw_dtype=qtype)
    else:
        writer.add_tensor(name, np.ascontiguousarray(data))


def _add_tokenizer(writer: Any, model_dir: Path, vocab_size: int) -> None:
    """Byte-level BPE vocabulary (``tokenizer.json``) plus special ids and chat template.

    Anima tokenizes prompts itself with the Hugging Face tokenizer and sends token ids, so
    llama.cpp only turns generated ids back into text: its pre-tokenizer setting is unused.
    """
    import gguf

    try:
        vocab = gguf.vocab.BpeVocab(model_dir)
    except Exception as exc:
        raise UnsupportedByEngine(
            f"{model_dir.name}: only byte-level BPE tokenizers (tokenizer.json) are converted"
        ) from exc
    tokens: list[bytes] = []
    types: list[int] = []
    for text, _score, kind in vocab.all_tokens():
        tokens.append(text)
        types.append(int(kind))
    while len(tokens) < vocab_size:  # embedding rows beyond the tokenizer: padding tokens
        tokens.append(f"[PAD{len(tokens)}]".encode())
        types.append(int(gguf.TokenType.UNUSED))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.vocab.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(writer)


def requantize_gguf(source: Path, out_file: Path, dtype: str) -> None:
    """Rewrite a GGUF model with its 2-D weights in ``dtype`` (f32, f16, q8_0 or q4_0).

    The bundled model ships as Q4_1, which llama.cpp's fast batched matrix kernels do not
    cover on x86; re-encoding the exact dequantised values as Q8_0 keeps them (to within
    Q8_0's rounding) and lets prompts and batches run on those kernels. Metadata is copied.
    """
    import gguf

    reader = gguf.GGUFReader(str(source))
    arch = reader.fields["general.architecture"].contents()
    qtype = {
        "f32": gguf.GGMLQuantizationType.F32,
        "f16": gguf.GGMLQuantizationType.F16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "q4_0": gguf.GGMLQuantizationType.Q4_0,
    }[dtype]
    writer = gguf.GGUFWriter(str(out_file), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in {"general.architecture", "general.file_type"}:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)
    writer.add_file_type(
        {
            "f32": gguf.LlamaFileType.ALL_F32,
            "f16": gguf.LlamaFileType.MOSTLY_F16,
            "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
        }.get(dtype, gguf.LlamaFileType.MOSTLY_Q8_0)
    )
    for tensor in reader.tensors:
        shape = tuple(int(x) for x in reversed(tensor.shape.tolist()))  # numpy order
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(shape)
        data = data.astype(np.float32)
        if data.ndim == 2 and qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(tensor.name, data.astype(np.float16))
        elif data.ndim == 2 and qtype in {
            gguf.GGMLQuantizationType.Q8_0,
            gguf.GGMLQuantizationType.Q4_0,
        }:
            quant = gguf.quants.quantize(data, qtype)
            writer.add_tensor(tensor.name, quant, raw_shape=quant.shape, raw_dtype=qtype)
        else:
            writer.add_tensor(tensor.name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
