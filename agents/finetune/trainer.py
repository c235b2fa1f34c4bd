"""LoRA training of one adapter with peft and the transformers ``Trainer``, resumable.

The ``Trainer`` is used rather than a hand-written loop because it already does what a
durable job needs: checkpoints that hold the adapter *and* the optimizer, scheduler and RNG
state, and ``resume_from_checkpoint`` that continues as if never stopped (same data order,
same learning-rate schedule). A process killed mid-run re-runs the training step of its job
(``agents.finetune.jobs``), which finds the newest complete checkpoint here and goes on from
it. A checkpoint counts as complete once the ``Trainer`` has written ``trainer_state.json``,
its last file; a half-written one (the process died while saving) is removed and the one
before it is used.

Same code on CPU and CUDA: the base model loads in the dtype the serving backend would pick
(bfloat16 where the hardware computes it natively, so half the memory and faster matmuls on
AVX512-BF16 CPUs), frozen; peft keeps the LoRA weights in float32, so small updates are not
lost to bfloat16 rounding. One training (or evaluation) runs per process at a time: two would
share the same cores, each take twice as long, and double the memory.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.finetune.data import Sample, collate
from agents.finetune.schema import FinetuneSettings, LossPoint, TrainingStats
from agents.llm.transformers_backend import pick_dtype
from core.settings import Settings

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
# Written in this order by the Trainer; the state file last.
CHECKPOINT_FILES = ("adapter_model.safetensors", "optimizer.pt", "trainer_state.json")
TRAINING_FILE = "anima-training.json"
# Training and evaluation each hold a model copy and all the cores: one at a time per process.
MODEL_WORK_LOCK = threading.Lock()
_IMPORT_LOCK = threading.Lock()


class TrainingHooks(Protocol):
    """What the job learns while the ``Trainer`` runs (progress, loss) and how it stops it."""

    def on_start(self, total_steps: int, resumed_from: int) -> None: ...

    def on_log(self, point: LossPoint, total_steps: int) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class LoadedBase:
    model: Any
    tokenizer: Any
    device: str
    dtype: str


def load_base(model_dir: Path, settings: Settings) -> LoadedBase:
    """The base model for training or evaluation, on the GPU when there is one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would fill the job's log
    if settings.llm.threads:
        torch.set_num_threads(settings.llm.threads)
    cuda = torch.cuda.is_available()
    dtype = pick_dtype(settings.llm.dtype, cuda)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    # A model dequantised from GGUF still says it is quantised, which peft refuses to train.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    device = "cuda" if cuda else "cpu"
    model.to(device)
    return LoadedBase(model, tokenizer, device, str(dtype).removeprefix("torch."))


def import_ml_stack() -> None:
    """Import transformers and peft once, under a lock, before a job touches them.

    transformers resolves ``from transformers import X`` lazily, and two threads doing that
    for the first time at once can see a half-initialised module (``ImportError: cannot import
    name 'AutoTokenizer'``): two fine-tunes starting together did exactly that.
    """
    with _IMPORT_LOCK:
        import peft  # noqa: F401
        import transformers

        for name in ("AutoTokenizer", "AutoModelForCausalLM", "Trainer", "TrainingArguments"):
            getattr(transformers, name)


def latest_checkpoint(folder: Path, prune: bool = False) -> Path | None:
    """The newest complete checkpoint in ``folder``.

    Complete means the ``Trainer`` wrote its last file (``trainer_state.json``) and the adapter
    and optimizer are there. With ``prune`` (only the trainer itself, before resuming: nobody
    else writes then), incomplete ones, left by a crash while saving, are removed.
    """
    if not folder.is_dir():
        return None
    found = sorted(
        (p for p in folder.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and p.is_dir()),
        key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX) or 0),
        reverse=True,
    )
    for candidate in found:
        if all((candidate / name).is_file() for name in CHECKPOINT_FILES):
            return candidate
        if prune:
            log.warning("removing incomplete checkpoint %s", candidate)
            shutil.rmtree(candidate, ignore_errors=True)
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def train_adapter(
    model_dir: Path,
    train: Sequence[Sample],
    options: FinetuneSettings,
    checkpoints: Path,
    out: Path,
    hooks: TrainingHooks,
    settings: Settings,
    base_ref: str,
) -> TrainingStats | None:
    """Train (or resume) and save the adapter to ``out``; None if ``hooks`` stopped it.

    ``out`` appears only complete (written beside it, then renamed). If it already exists a
    previous attempt finished: its recorded stats are returned and nothing is trained again.
    """
    done = out / TRAINING_FILE
    if done.is_file():
        return TrainingStats.model_validate_json(done.read_text(encoding="utf-8"))
    with MODEL_WORK_LOCK:
        base = load_base(model_dir, settings)
        try:
            return _train(base, train, options, checkpoints, out, hooks, base_ref)
        finally:
            del base
            release_memory()


def _train(
    base: LoadedBase,
    train: Sequence[Sample],
    options: FinetuneSettings,
    checkpoints: Path,
    out: Path,
    hooks: TrainingHooks,
    base_ref: str,
) -> TrainingStats | None:
    from transformers import Trainer
    from transformers.trainer_callback import PrinterCallback

    model = _with_lora(base.model, options)
    total = options.total_steps(len(train))
    resume = latest_checkpoint(checkpoints, prune=True)
    resumed_from = int(resume.name.removeprefix(CHECKPOINT_PREFIX)) if resume else 0
    timing: dict[str, float] = {}
    items = [{"input_ids": s.input_ids, "labels": s.labels} for s in train]
    pad_id = base.tokenizer.pad_token_id
    trainer = Trainer(
        model=model,
        args=_training_args(options, checkpoints, total, cuda=base.device == "cuda"),
        train_dataset=_ListDataset(items),
        data_collator=collate(pad_id),
        callbacks=[_relay(hooks, total, resumed_from, timing)],
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to the job, not to stdout
    if resume is not None:
        log.info("resuming the fine-tune from %s", resume)
    with warnings.catch_warnings():  # transformers 5 deprecation noise from inside Trainer
        warnings.filterwarnings("ignore", category=FutureWarning)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if hooks.should_stop():
        return None
    stats = _training_stats(trainer.state, base, train, resumed_from, timing)
    _save_adapter(model, out, base_ref, stats)
    return stats


def _with_lora(model: Any, options: FinetuneSettings) -> Any:
    """The base model wrapped with fresh LoRA layers, the only weights that will train."""
    from peft import LoraConfig, get_peft_model

    model.config.use_cache = False
    lora = LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=list(options.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _training_stats(
    state: Any,
    base: LoadedBase,
    train: Sequence[Sample],
    resumed_from: int,
    timing: dict[str, float],
) -> TrainingStats:
    """What the finished run cost and reached; time counts from this attempt's start."""
    steps_run = max(1, state.global_step - resumed_from)
    seconds = time.perf_counter() - timing.get("start", time.perf_counter())
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    return TrainingStats(
        steps=state.global_step,
        seconds=round(seconds, 2),
        seconds_per_step=round(seconds / steps_run, 3),
        resumed_from_step=resumed_from,
        final_loss=round(float(losses[-1]), 4) if losses else None,
        device=base.device,
        dtype=base.dtype,
        peak_rss_mb=peak_rss_mb(),
        train_tokens=sum(len(s.input_ids) for s in train),
    )


def _relay(hooks: TrainingHooks, total: int, resumed_from: int, timing: dict[str, float]) -> Any:
    """A trainer callback passing progress and loss to ``hooks`` and stopping on a cancel."""
    from transformers import TrainerCallback

    class Relay(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["start"] = time.perf_counter()
            hooks.on_start(total, resumed_from)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                point = LossPoint(
                    step=state.global_step,
                    loss=round(float(logs["loss"]), 4),
                    learning_rate=logs.get("learning_rate"),
                )
                hooks.on_log(point, total)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if hooks.should_stop():
                control.should_training_stop = True
                control.should_save = False

    return Relay()


def _training_args(options: FinetuneSettings, checkpoints: Path, total: int, *, cuda: bool) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation,
        learning_rate=options.learning_rate,
        max_steps=total,
        lr_scheduler_type="cosine",
        warmup_steps=total // 20,
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="steps",
        save_steps=options.checkpoint_every,
        save_total_limit=1,
        report_to=[],
        disable_tqdm=True,
        seed=options.seed,
        data_seed=options.seed,
        use_cpu=not cuda,
        dataloader_pin_memory=cuda,
        remove_unused_columns=False,
        log_level="warning",
    )


def _save_adapter(model: Any, out: Path, base_ref: str, stats: TrainingStats) -> None:
    """Write the adapter to a staging folder, then move it to ``out`` in one rename."""
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    _name_base(staging, base_ref)
    (staging / TRAINING_FILE).write_text(stats.model_dump_json(), encoding="utf-8")
    os.replace(staging, out)


def _name_base(folder: Path, base_ref: str) -> None:
    """peft records the local path it loaded; record the model reference instead."""
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_ref
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


class _ListDataset:
    """A map-style dataset over a list (the ``datasets`` package is not needed for this)."""

    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


def release_memory() -> None:
    """Give the model's memory back to the OS (the app process keeps running)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
