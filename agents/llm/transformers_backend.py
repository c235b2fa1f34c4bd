"""The in-process backend: a Hugging Face transformers causal LM on this machine's CPU or GPU.

It is the default because it needs nothing but the Python packages: the bundled SmolLM2 runs
with no network and no server. The model loads lazily on first use (``load()`` warms it), so
the app starts at once. Generation runs in a worker thread that feeds a
``TextIteratorStreamer``; callers iterate text deltas. One generation runs at a time per
model: on a couple of CPU cores two concurrent generations are each slower than two in a row,
and sharing one KV-cache-free model object between threads in ``generate`` is not supported.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.llm.base import (
    Completion,
    StreamResult,
    chat_template_options,
    complete_from_stream,
)
from agents.llm.model_source import ModelSource, display_name, resolve_model
from agents.llm.stop_cutter import StopCutter as _StopCutter
from agents.schema import ChatMessage, GenerationSettings
from core.errors import BackendError
from core.settings import Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Models advertise up to 128k+ positions; a KV cache that long does not fit a laptop. The
# chat engine trims history to this window, so cap it unless the user overrides it.
MAX_AUTO_CONTEXT = 32768


def cpu_has_fast_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """bfloat16 matmuls beat float32 only on CPUs with native bf16 (AVX512-BF16 or AMX)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def pick_dtype(setting: str, cuda: bool) -> torch.dtype:
    """``auto``: bf16 where the hardware computes it natively, else fp16 on GPU / fp32 on CPU."""
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    if cuda:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


class TransformersBackend:
    """``LLMBackend`` over ``AutoModelForCausalLM.generate``.

    ``adapter_path`` optionally names a peft LoRA folder applied on top of the base model
    (what Anima's fine-tuning produces).
    """

    # Per-request options (``agents.llm.options``): none. ``generate`` has no presence or
    # frequency penalty, no grammar; requests that ask for them get a 400 naming them. ``seed``
    # (a generation setting) is honoured: one sequence at a time runs here, so
    # ``torch.manual_seed`` before it makes it reproducible.
    request_options: frozenset[str] = frozenset()

    def __init__(self, settings: Settings, adapter_path: str | None = None) -> None:
        self.settings = settings
        self.adapter_path = adapter_path
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._source: ModelSource | None = None
        self._context_window: int | None = None
        self.load_seconds: float | None = None

    # ----- LLMBackend ----------------------------------------------------------------
    @property
    def model_name(self) -> str:
        name = self._source.name if self._source else display_name(self.settings.llm.model)
        return f"{name} + {Path(self.adapter_path).name}" if self.adapter_path else name

    @property
    def context_window(self) -> int:
        if self.settings.llm.context_window:
            return self.settings.llm.context_window
        self.load()
        assert self._context_window is not None
        return self._context_window

    def count_tokens(self, text: str) -> int:
        self.load()
        with self._tokenizer_lock:
            return len(self._tokenizer.encode(text, add_special_tokens=False))

    def complete(self, messages: list[ChatMessage], params: GenerationSettings) -> Completion:
        return complete_from_stream(self, messages, params)

    def render_chat(self, messages: list[ChatMessage]) -> str:
        """The text the chat template makes of ``messages``: what ``stream`` tokenizes (the
        prompt inspector shows it)."""
        self.load()
        with self._tokenizer_lock:
            return str(
                self._tokenizer.apply_chat_template(
                    [{"role": m.role, "content": m.content} for m in messages],
                    **chat_template_options(messages),
                    tokenize=False,
                )
            )

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult | None = None,
    ) -> Iterator[str]:
        """Yield text deltas while the model generates.

        Stop strings are cut from the text (the model is then told to stop); if the caller
        stops iterating (a client disconnected), generation stops within one token and the
        model is free for the next request.
        """
        result = result if result is not None else StreamResult()
        self.load()
        with self._generate_lock:
            yield from self._stream_locked(messages, params, result)

    # ----- what the scheduler reads (``Schedulable``) ---------------------------------
    max_concurrency = 1  # one generate() at a time: two on a few CPU cores are each slower

    @property
    def lane_key(self) -> object:
        return self

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    @property
    def engine_name(self) -> str:
        return "transformers"

    def unload(self) -> None:
        """Drop the model (the pool's eviction); the next request loads it again."""
        with self._load_lock, self._generate_lock:
            self._model = None

    # ----- loading -------------------------------------------------------------------
    def load(self) -> None:
        """Load tokenizer and model now (idempotent, thread-safe)."""
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is None:
                self._load()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        source = resolve_model(self.settings)
        if self.settings.llm.threads:
            torch.set_num_threads(self.settings.llm.threads)
        cuda = torch.cuda.is_available()
        dtype = pick_dtype(self.settings.llm.dtype, cuda)
        kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype, **kwargs)
        except OSError as exc:
            if not source.is_local:
                raise BackendError(
                    f"model {source.path} could not be loaded ({exc}); if the network is "
                    "offline, set ANIMA_LLM_MODEL to a local directory"
                ) from exc
            raise BackendError(f"could not load model from {source.path}: {exc}") from exc
        except (ValueError, KeyError) as exc:
            raise BackendError(f"could not load model {source.name}: {exc}") from exc
        if self.adapter_path:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter_path)
        model.to("cuda" if cuda else "cpu")
        model.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        positions = getattr(model.config, "max_position_embeddings", None) or 2048
        self._context_window = min(int(positions), MAX_AUTO_CONTEXT)
        self._tokenizer, self._source = tokenizer, source
        self._model = model  # last: other threads test this to skip the lock
        self.load_seconds = time.perf_counter() - started
        log.info(
            "loaded %s (%s, %s) in %.1f s",
            self.model_name,
            dtype,
            "cuda" if cuda else "cpu",
            self.load_seconds,
        )

    # ----- generation ----------------------------------------------------------------
    def _encode_prompt(self, messages: list[ChatMessage]) -> dict[str, Any]:
        import torch

        tokenizer = self._tokenizer
        if not tokenizer.chat_template:
            raise BackendError(
                f"model {self.model_name} has no chat template (a base model?); "
                "use an instruct/chat model"
            )
        try:
            with self._tokenizer_lock:
                encoded = tokenizer.apply_chat_template(
                    [{"role": m.role, "content": m.content} for m in messages],
                    **chat_template_options(messages),
                    return_tensors="pt",
                    return_dict=True,
                )
        except Exception as exc:  # jinja TemplateError, e.g. "roles must alternate"
            raise BackendError(f"the chat template of {self.model_name} refused: {exc}") from exc
        # transformers 4 returned a bare tensor here, 5 returns a BatchEncoding (a dict).
        if isinstance(encoded, torch.Tensor):
            encoded = {"input_ids": encoded, "attention_mask": torch.ones_like(encoded)}
        device = self._model.device
        return {key: value.to(device) for key, value in dict(encoded).items()}

    def _generation_config(self, params: GenerationSettings, max_new_tokens: int) -> Any:
        config = copy.deepcopy(self._model.generation_config)
        sample = params.temperature > 0
        config.update(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None,
            top_k=params.top_k if sample else None,
            repetition_penalty=params.repetition_penalty,
            pad_token_id=config.pad_token_id
            if config.pad_token_id is not None
            else self._tokenizer.pad_token_id,
        )
        return config

    def _stream_locked(
        self, messages: list[ChatMessage], params: GenerationSettings, result: StreamResult
    ) -> Iterator[str]:
        inputs = self._encode_prompt(messages)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        room = self.context_window - prompt_tokens
        if room < 1:
            raise BackendError(
                f"the prompt is {prompt_tokens} tokens; the model's context window is "
                f"{self.context_window}: shorten the history or the card"
            )
        max_new = min(params.max_new_tokens, room)
        try:
            config = self._generation_config(params, max_new)
        except ValueError as exc:
            raise BackendError(f"invalid generation settings: {exc}") from exc
        result.prompt_tokens, result.completion_tokens, result.finish_reason = (
            prompt_tokens,
            0,
            "stop",
        )
        cancel = threading.Event()
        streamer, thread, outcome = self._start_generation(
            inputs, config, params.seed, prompt_tokens, cancel
        )
        cutter = _StopCutter(params.stop)
        try:
            stopped = yield from _stream_text(streamer, cutter, cancel, outcome)
        finally:
            cancel.set()  # also reached when the consumer stops iterating early
            thread.join()
        if "error" in outcome:
            exc = outcome["error"]
            raise BackendError(f"generation failed in {self.model_name}: {exc}") from exc
        ids: list[int] = outcome.get("ids", [])
        result.completion_tokens = len(ids)
        eos = config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        hit_length = len(ids) >= max_new and not (ids and ids[-1] in eos_ids)
        result.finish_reason = "length" if hit_length and not stopped else "stop"

    def _start_generation(
        self,
        inputs: dict[str, Any],
        config: Any,
        seed: int | None,
        prompt_tokens: int,
        cancel: threading.Event,
    ) -> tuple[Any, threading.Thread, dict[str, Any]]:
        """Run ``generate`` on its own thread; its text streams out of the returned streamer.

        Setting ``cancel`` stops it at the next token. The outcome dict receives the new token
        ids (``"ids"``) or the exception it raised (``"error"``).
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> Any:
                return torch.full(
                    (input_ids.shape[0],),
                    cancel.is_set(),
                    dtype=torch.bool,
                    device=input_ids.device,
                )

        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                if seed is not None:
                    torch.manual_seed(seed)
                output = self._model.generate(
                    **inputs,
                    generation_config=config,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                )
                outcome["ids"] = output[0, prompt_tokens:].tolist()
            except BaseException as exc:
                outcome["error"] = exc
                streamer.end()  # wake the consumer, which then raises

        thread = threading.Thread(target=work, name="llm-generate", daemon=True)
        thread.start()
        return streamer, thread, outcome


def _stream_text(
    streamer: Any, cutter: _StopCutter, cancel: threading.Event, outcome: dict[str, Any]
) -> Generator[str, None, bool]:
    """The streamed text cut at the first stop string; returns whether a stop string cut it."""
    stopped = False
    for delta in streamer:
        if "error" in outcome:
            break
        text, stopped = cutter.feed(delta)
        if text:
            yield text
        if stopped:
            cancel.set()
            break
    if not stopped and "error" not in outcome:
        tail = cutter.flush()
        if tail:
            yield tail
    return stopped
