"""Benchmark: a user's own GGUF of a non-Llama architecture, on the llama.cpp engine and on
transformers, in one run.

What a user does: download one GGUF (a Qwen2 0.5B, Q8_0) into a folder and point
``ANIMA_LLM_MODEL`` at that folder. No real Qwen2 GGUF ships offline, so this builds one of the
same shape at random (hidden 896, 24 layers, 14 query heads, 2 KV heads, MLP 4864, tied
embeddings, Q8_0) with one difference: the vocabulary is the bundled SmolLM2 tokenizer's 49,152
tokens instead of Qwen2's 151,936, so the embedding matrix is a third of Qwen2's (about 400M
parameters in all, 0.43 GB on disk instead of 0.5 GB); the decoder layers, which dominate the
time per token, are the same. The folder holds only the GGUF: the engine tokenizes with the
GGUF's own vocabulary.

For each engine, in a fresh process (imports included, as when the app starts):

- ready: from process start until ``load()`` returns, on the first start (an empty model
  cache: whatever the engine converts once is included) and on the second start; in
  brackets the part spent in ``load()`` itself, the rest being Python imports (transformers
  imports torch, which the app imports anyway);
- a 120-token reply (after the second start): greedy, the wall time of one ``complete()`` on
  a short prompt, prompt processing included.

    .venv/bin/python bench/user_model.py [--work DIR] [--skip-transformers]

The built GGUF is kept in ``--work`` (default: a folder under the system temp dir) so a rerun
skips building it. The load average is printed: on shared cores compare the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTED = time.perf_counter()  # a measuring child's process start (imports below included)

SHAPE = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
}
REPLY_TOKENS = 120


def build_gguf(work: Path) -> Path:
    """The random Qwen2 of 0.5B shape as a lone Q8_0 GGUF in ``work/user-model/``."""
    target = work / "user-model" / "qwen2-0.5b-shape-q8_0.gguf"
    if target.is_file():
        return target
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    sys.path.insert(0, str(ROOT))
    from agents.llm.gguf_convert import convert_model
    from agents.llm.model_source import bundled_gguf_path

    started = time.perf_counter()
    bundled = bundled_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(bundled.parent, gguf_file=bundled.name)
    config = Qwen2Config(
        **SHAPE,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    hf_dir = work / "hf-qwen2"
    Qwen2ForCausalLM(config).save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    convert_model(hf_dir, tmp, "q8_0")
    tmp.rename(target)
    shutil.rmtree(hf_dir)
    print(
        f"built {target.name} ({target.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return target


def measure(engine: str, model_dir: Path, cache: Path, reply: bool) -> dict[str, float]:
    """In this (fresh) process: ready time since process start, then (``reply``) a reply."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    # What both engines import (transformers pulls in torch): done before load() is timed, so
    # that load() shows the engine's own work.
    import transformers.models.auto.tokenization_auto  # noqa: F401

    from agents.llm.factory import build_llm
    from agents.schema import ChatMessage, GenerationSettings
    from core.settings import Settings

    settings = Settings(
        data_dir=cache / "data",
        model_cache_dir=cache,
        llm_backend="local",
        llm_model=str(model_dir),
        llm_gguf_file=None,
        llm_preload=False,
        llm_engine=engine,
        llm_engine_format="source",  # the user's file as it is
        llm_parallel=1,
    )
    backend = build_llm(settings)
    loading = time.perf_counter()
    backend.load()
    ready = time.perf_counter() - STARTED
    load = time.perf_counter() - loading
    served_by = getattr(backend, "engine_name", "transformers")
    if not reply:
        return {"ready_s": ready, "load_s": load, "served_by": served_by}
    messages = [
        ChatMessage(role="system", content="You are Luna, a cheerful cat who loves stories."),
        ChatMessage(role="user", content="Tell me a very long story about the sea."),
    ]
    params = GenerationSettings(
        temperature=0.0, max_new_tokens=REPLY_TOKENS, repetition_penalty=1.0
    )
    started = time.perf_counter()
    answer = backend.complete(messages, params)
    return {
        "ready_s": ready,
        "load_s": load,
        "reply_s": time.perf_counter() - started,
        "tokens": answer.completion_tokens,
        "served_by": served_by,
    }


def _child(engine: str, model_dir: Path, cache: Path, reply: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--measure", engine, str(model_dir), str(cache)]
    command += ["--reply"] if reply else []
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "anima-bench")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--reply", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        engine, model_dir, cache = args.measure
        print(json.dumps(measure(engine, Path(model_dir), Path(cache), args.reply)))
        return

    gguf = build_gguf(args.work)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    engines = ["llamacpp"] + ([] if args.skip_transformers else ["transformers"])
    rows = []
    for engine in engines:
        cache = args.work / f"cache-{engine}"
        shutil.rmtree(cache, ignore_errors=True)  # the first start converts what it needs
        print(f"measuring {engine} ...", file=sys.stderr, flush=True)
        first = _child(engine, gguf.parent, cache, reply=False)
        second = _child(engine, gguf.parent, cache, reply=True)
        rows.append((engine, first, second))
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())

    print(f"user GGUF: {gguf.name}, {gguf.stat().st_size / 1e6:.0f} MB, folder holds only it")
    print(f"load average before / after: {load_before} / {load_after}; cpus {os.cpu_count()}")
    print()
    print(
        "| engine | served by | ready, first start (s) [load()] | ready, second start (s) [load()] "
        f"| {REPLY_TOKENS}-token reply (s) | tokens | tok/s over the reply |"
    )
    print("|---|---|---|---|---|---|---|")
    for engine, first, second in rows:
        reply = second["reply_s"]
        tokens = int(second["tokens"])
        print(
            f"| {engine} | {second['served_by']} | "
            f"{first['ready_s']:.1f} [{first['load_s']:.1f}] | "
            f"{second['ready_s']:.1f} [{second['load_s']:.1f}] | {reply:.1f} | {tokens} | "
            f"{tokens / reply:.1f} |"
        )


if __name__ == "__main__":
    main()
