"""The fast local engine: llama.cpp's server, in-process through ``xllamacpp``.

Chosen by measurement among the prebuilt engines (``bench/llm.py``): on the bundled model it
decodes about 3x faster than transformers, batches the sequences of different requests in the
same decode steps (continuous batching over ``llm_parallel`` slots), applies a LoRA adapter per
request on one copy of the base model, and is correct when requests mix adapters. Two traps
of llama.cpp are handled here rather than trusted:

- An adapter applies only if the request names it, and a request that omits an adapter keeps
  the previous one's scale; so every request carries the scale of *every* loaded adapter
  (1.0 for its own, 0.0 for the rest).
- Its RAM prompt cache ignores adapters: a prompt pushed out of a slot and asked again under
  another adapter gets the KV computed under the first one back (verified: the reply
  changes). So that cache is off (``cache_ram_mib = 0``). llama.cpp does clear a slot's own
  cache when the adapter changes, which would waste a warm persona; so this module picks the
  slot itself (``id_slot``, ``_slot_value``): the one whose cache this prompt reuses most
  *under the same adapter*, less what it would destroy of another conversation's cache, else
  an empty or the least recently used slot; and it sends ``cache_prompt: false`` when the
  slot's KV came from another adapter. A conversation thus keeps its own slot from turn to
  turn (two chats that share only a system prompt no longer evict each other every turn), a
  persona prefix is reused where that costs no other chat its cache, and nothing is reused
  across adapters.

llama.cpp loads adapters when its server starts. A new adapter therefore starts a second
server with the new set (least recently used adapters beyond ``llm_adapter_budget_mb``
dropped), new requests go to it, and the old one is freed when its last request ends: no
request waits for the swap. An adapter the converter cannot express (DoRA, extra trained
modules, an architecture whose layout it does not know, ...) raises ``UnsupportedByEngine``,
and so does a model llama.cpp cannot load: ``LlamaCppBackend`` (``llamacpp_backend``) then
falls back to the transformers backend, with the reason logged.

The engine's HTTP listener (llama.cpp always opens one) binds 127.0.0.1 on a free port and
requires a random API key that never leaves this process.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.llm.base import StreamResult, chat_template_options
from agents.llm.engine_source import EngineModel, adapter_gguf, resolve_engine_model
from agents.llm.gguf_convert import UnsupportedByEngine
from agents.llm.model_source import display_name
from agents.llm.options import ALL_OPTIONS, wants
from agents.llm.stop_cutter import StopCutter
from agents.schema import ChatMessage, GenerationSettings
from core.errors import BackendError
from core.settings import Settings

log = logging.getLogger(__name__)

MAX_AUTO_CONTEXT = 32768
_DONE = object()


@dataclass
class _Slot:
    index: int
    busy: bool = False
    adapter: str | None = None  # the adapter whose KV the slot's cache holds
    tokens: list[int] = field(default_factory=list)  # the prompt it last processed
    used_at: float = 0.0


class _ServerGeneration:
    """One running llama.cpp server with a fixed adapter list and its slots."""

    def __init__(self, server: Any, adapters: list[str], parallel: int) -> None:
        self.server = server
        self.adapters = adapters  # adapter folder paths, in llama.cpp id order
        self.index = {path: i for i, path in enumerate(adapters)}
        self.slots = [_Slot(i) for i in range(parallel)]
        self.users = 0
        self.retired = False


def engine_threads(settings: Settings) -> int:
    """``ANIMA_LLM_THREADS``, else one core fewer than the machine has (at least one).

    llama.cpp's threads spin while they wait for each other at every step; when one of them
    is preempted (by the app's own Python threads streaming the replies, or by anything else
    on the machine) the others burn their time slices waiting. Measured on 2 busy cores
    through the app: 1 thread decoded 4-8x faster than 2. One core is left to the server.
    """
    return settings.llm.threads or max(1, (os.cpu_count() or 2) - 1)


def prefill_threads(settings: Settings) -> int:
    """``ANIMA_LLM_PREFILL_THREADS``, else ``ANIMA_LLM_THREADS``, else every core.

    llama.cpp uses these threads for any step of more than one token: a prompt, or the
    batched decoding of several streams. Such steps are large matrix products in which a
    thread seldom waits on another, so they gain from every core where single-token decoding
    loses (see ``engine_threads``). Measured on 2 idle cores with the bundled Q4_1: a 1.4k-token
    persona 10.8 s -> 4.9 s, 8 streams 75 -> 115 tok/s, one stream unchanged.
    """
    return settings.llm.prefill_threads or settings.llm.threads or (os.cpu_count() or 1)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaCppEngine:
    """One base model in one llama.cpp server, shared by every agent and adapter on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # generation, slots, adapter LRU
        self._load_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._gen: _ServerGeneration | None = None
        self._model: EngineModel | None = None
        self._tokenizer: Any = None
        self._lru: collections.OrderedDict[str, tuple[Path, int]] = collections.OrderedDict()
        self.load_seconds: float | None = None

    # ----- loading -----------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self._gen is not None

    @property
    def model(self) -> EngineModel:
        self.load()
        assert self._model is not None
        return self._model

    @property
    def name(self) -> str:
        return self._model.name if self._model else display_name(self.settings.llm.model)

    def load(self) -> None:
        if self._gen is not None:
            return
        with self._load_lock:
            if self._gen is not None:
                return
            started = time.perf_counter()
            try:
                import xllamacpp  # noqa: F401
            except ImportError as exc:
                raise UnsupportedByEngine("xllamacpp is not installed") from exc
            model = resolve_engine_model(self.settings)
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(model.tokenizer_dir))
            if not tokenizer.chat_template:
                raise BackendError(
                    f"model {model.name} has no chat template (a base model?); "
                    "use an instruct/chat model"
                )
            self._model, self._tokenizer = model, tokenizer
            try:
                self._gen = self._start_server([])
            except BackendError as exc:  # e.g. an architecture this llama.cpp build lacks
                self._model = self._tokenizer = None
                raise UnsupportedByEngine(exc.message) from exc
            self.load_seconds = time.perf_counter() - started
            log.info("llama.cpp engine: %s ready in %.1f s", model.gguf.name, self.load_seconds)

    def unload(self) -> None:
        """Free the model (the pool's eviction); the next request loads it again."""
        with self._load_lock, self._lock:
            gen, self._gen = self._gen, None
            if gen is not None:
                gen.retired = True
                if gen.users == 0:
                    gen.server = None

    def _start_server(self, adapters: list[str]) -> _ServerGeneration:
        import xllamacpp as xlc

        assert self._model is not None
        s = self.settings
        params = xlc.CommonParams()
        params.model.path = str(self._model.gguf)
        params.n_parallel = s.llm.parallel
        params.n_ctx = s.llm.kv_tokens
        params.kv_unified = True  # one KV pool: any slot may hold a long persona
        params.n_batch = 2048
        params.cache_ram_mib = 0  # llama.cpp RAM prompt cache is not adapter-aware (see top)
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [secrets.token_hex(16)]
        params.verbosity = -1
        params.warmup = True
        params.cpuparams.n_threads = engine_threads(s)
        params.cpuparams_batch.n_threads = prefill_threads(s)
        params.lora_init_without_apply = True
        params.lora_adapters = [
            xlc.CommonAdapterLoraInfo(str(self._lru[a][0]), 0.0) for a in adapters
        ]
        try:
            server = xlc.Server(params)
        except Exception as exc:
            raise BackendError(f"llama.cpp could not load {self._model.gguf}: {exc}") from exc
        return _ServerGeneration(server, adapters, s.llm.parallel)

    # ----- adapters ----------------------------------------------------------------------
    def prepare_adapter(self, adapter_dir: Path) -> None:
        """Convert (once) and load ``adapter_dir`` if it is not in the running server.

        Raises ``UnsupportedByEngine`` when the adapter cannot be served here.
        """
        self.load()
        key = str(adapter_dir)
        with self._lock:
            if self._gen is not None and key in self._gen.index:
                self._lru.move_to_end(key)
                return
        gguf = adapter_gguf(self.settings, self.model, adapter_dir)
        with self._swap_lock:
            with self._lock:
                if self._gen is not None and key in self._gen.index:
                    return
                self._lru[key] = (gguf, gguf.stat().st_size)
                self._lru.move_to_end(key)
                budget = int(self.settings.llm.adapter_budget_mb * 1024 * 1024)
                while len(self._lru) > 1 and sum(v[1] for v in self._lru.values()) > budget:
                    evicted, _ = self._lru.popitem(last=False)
                    log.info("llama.cpp engine: adapter %s evicted (memory budget)", evicted)
                wanted = list(self._lru)
            started = time.perf_counter()
            new = self._start_server(wanted)
            with self._lock:
                old, self._gen = self._gen, new
                if old is not None:
                    old.retired = True
                    if old.users == 0:
                        old.server = None
            log.info(
                "llama.cpp engine: serving %d adapter(s) after a %.1f s swap (added %s)",
                len(wanted),
                time.perf_counter() - started,
                adapter_dir.name,
            )

    @property
    def loaded_adapters(self) -> list[str]:
        gen = self._gen
        return [Path(a).name for a in gen.adapters] if gen else []

    # ----- tokens ------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        self.load()
        with self._tokenizer_lock:
            return len(self._tokenizer.encode(text, add_special_tokens=False))

    def encode_chat(self, messages: list[ChatMessage]) -> list[int]:
        self.load()
        try:
            with self._tokenizer_lock:
                encoded = self._tokenizer.apply_chat_template(
                    [{"role": m.role, "content": m.content} for m in messages],
                    **chat_template_options(messages),
                    tokenize=True,
                    return_dict=True,
                )
        except Exception as exc:  # jinja TemplateError, e.g. "roles must alternate"
            raise BackendError(f"the chat template of {self.name} refused: {exc}") from exc
        return list(encoded["input_ids"])

    def render_chat(self, messages: list[ChatMessage]) -> str:
        """The text ``encode_chat`` tokenizes (the prompt inspector shows it)."""
        self.load()
        with self._tokenizer_lock:
            return str(
                self._tokenizer.apply_chat_template(
                    [{"role": m.role, "content": m.content} for m in messages],
                    **chat_template_options(messages),
                    tokenize=False,
                )
            )

    @property
    def context_window(self) -> int:
        if self.settings.llm.context_window:
            return self.settings.llm.context_window
        return min(self.model.context_length, MAX_AUTO_CONTEXT, self.settings.llm.kv_tokens)

    # ----- generation --------------------------------------------------------------------
    def _acquire(
        self, adapter: str | None, prompt: list[int]
    ) -> tuple[_ServerGeneration, _Slot, bool]:
        """The server generation and slot for a request, and whether its cache may be used."""
        with self._lock:
            gen = self._gen
            if gen is None:
                raise BackendError("the llama.cpp engine was unloaded")
            free = [s for s in gen.slots if not s.busy]
            if not free:  # the scheduler admits at most llm_parallel; be safe anyway
                raise BackendError("no free llama.cpp slot")
            best = max(free, key=lambda s: (_slot_value(s, adapter, prompt), -s.used_at))
            reuse = best.adapter == adapter
            best.busy = True
            best.adapter = adapter
            best.tokens = list(prompt)
            best.used_at = time.monotonic()
            gen.users += 1
            return gen, best, reuse

    def _release(self, gen: _ServerGeneration, slot: _Slot, ok: bool) -> None:
        with self._lock:
            slot.busy = False
            if not ok:
                slot.tokens = []  # unknown cache state after a failure: do not trust it
            gen.users -= 1
            if gen.retired and gen.users == 0:
                gen.server = None  # frees the old server (its loop thread ends)

    # Every per-request option (``agents.llm.options``): llama.cpp's server does them all.
    request_options = ALL_OPTIONS - {"response_format"}

    def encode_text(self, text: str) -> list[int]:
        """A raw prompt (text completion): the text's tokens, no chat template."""
        self.load()
        with self._tokenizer_lock:
            return list(self._tokenizer.encode(text))

    def generate(
        self,
        adapter_dir: Path | None,
        messages: list[ChatMessage],
        params: GenerationSettings,
        result: StreamResult,
    ) -> Iterator[str]:
        raw = wants(params, "raw_prompt")
        prompt = self.encode_text(raw) if raw is not None else self.encode_chat(messages)
        room = self.context_window - len(prompt)
        if room < 1:
            raise BackendError(
                f"the prompt is {len(prompt)} tokens; the model's context window is "
                f"{self.context_window}: shorten the history or the card"
            )
        max_new = min(params.max_new_tokens, room)
        key = str(adapter_dir) if adapter_dir is not None else None
        if adapter_dir is not None:
            self.prepare_adapter(adapter_dir)
        result.prompt_tokens, result.completion_tokens, result.finish_reason = (
            len(prompt),
            0,
            "stop",
        )
        gen, slot, reuse = self._acquire(key, prompt)
        body: dict[str, Any] = {
            "prompt": prompt,
            "n_predict": max_new,
            "stream": True,
            "id_slot": slot.index,
            "cache_prompt": reuse,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": 0.0,  # llama.cpp's default 0.05 is not a knob Anima (or transformers) has
            "repeat_penalty": params.repetition_penalty,
            "repeat_last_n": len(prompt) + max_new,  # like transformers: every earlier token
            # Every adapter's scale, every time (see the module docstring).
            "lora": [
                {"id": i, "scale": 1.0 if path == key else 0.0}
                for i, path in enumerate(gen.adapters)
            ],
        }
        if params.seed is not None:
            body["seed"] = params.seed
            # A cached prefix changes how the prompt is batched, and so the logits in their
            # last bits: enough for a sample to drift. Seeded requests compute it whole.
            body["cache_prompt"] = False
        body.update(_request_options(params))
        if key is not None and key not in gen.index:  # evicted between prepare and acquire
            self._release(gen, slot, ok=False)
            raise BackendError(f"adapter {adapter_dir} was unloaded; retry")
        yield from self._run(gen, slot, body, params, result, max_new)

    def _run(
        self,
        gen: _ServerGeneration,
        slot: _Slot,
        body: dict[str, Any],
        params: GenerationSettings,
        result: StreamResult,
        max_new: int,
    ) -> Iterator[str]:
        chunks, cancel, thread = _start_request(gen.server, body)
        outcome = _Outcome(logprobs=result.logprobs if "n_probs" in body else None)
        ok = False
        try:
            yield from _stream_text(chunks, cancel, StopCutter(params.stop), outcome)
            ok = True
        finally:
            cancel.set()  # also when the consumer stops iterating early (a disconnect)
            thread.join()
            self._release(gen, slot, ok)
        outcome.record(result, max_new)


@dataclass
class _Outcome:
    """What the chunks of one request said about it, beyond its text."""

    stopped: bool = False  # a stop string cut the reply
    finish: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    pieces: int = 0
    logprobs: list[dict[str, Any]] | None = None  # filled while streaming when asked for

    def record(self, result: StreamResult, max_new: int) -> None:
        result.completion_tokens = int(self.usage.get("completion_tokens") or self.pieces)
        details = self.usage.get("prompt_tokens_details") or {}
        result.cached_tokens = int(details.get("cached_tokens") or 0)
        hit_length = self.finish == "length" or result.completion_tokens >= max_new
        result.finish_reason = "length" if hit_length and not self.stopped else "stop"


def _slot_value(slot: _Slot, adapter: str | None, prompt: list[int]) -> int:
    """What putting ``prompt`` in ``slot`` is worth, in prompt tokens: those its cache saves
    computing, minus the cached tokens of another conversation it throws away. An empty slot
    is worth 0; a slot holding this conversation's previous turn is worth about its length."""
    if slot.adapter != adapter:
        return -len(slot.tokens)  # its KV is another adapter's: nothing reusable, all lost
    shared = _common_prefix(slot.tokens, prompt)
    return shared - (len(slot.tokens) - shared)


def _start_request(
    server: Any, body: dict[str, Any]
) -> tuple[queue.SimpleQueue[Any], threading.Event, threading.Thread]:
    """Run one completion on its own thread; its chunks, then an error or ``_DONE``, queue up.

    Setting the returned event asks llama.cpp to stop at its next chunk.
    """
    chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
    cancel = threading.Event()

    def on_chunk(data: Any) -> bool:
        chunks.put(data)
        return cancel.is_set()

    def work() -> None:
        try:
            server.handle_completions(body, on_chunk)
        except BaseException as exc:  # surfaces in the consumer
            chunks.put(exc)
        finally:
            chunks.put(_DONE)

    thread = threading.Thread(target=work, name="llamacpp-request", daemon=True)
    thread.start()
    return chunks, cancel, thread


def _stream_text(
    chunks: queue.SimpleQueue[Any],
    cancel: threading.Event,
    cutter: StopCutter,
    outcome: _Outcome,
) -> Iterator[str]:
    """The reply's text from the queued chunks, cut at the first stop string."""
    while True:
        item = chunks.get()
        if item is _DONE:
            break
        if isinstance(item, BaseException):
            raise BackendError(f"llama.cpp failed: {item}") from item
        error = _error_of(item)
        if error:
            raise BackendError(f"llama.cpp: {error}")
        outcome.usage = item.get("usage") or outcome.usage
        for choice in item.get("choices") or []:
            outcome.finish = choice.get("finish_reason") or outcome.finish
            if outcome.logprobs is not None:  # before the text: a reader sees both together
                outcome.logprobs.extend(_logprob_entries(choice.get("logprobs")))
            text = choice.get("text") or ""
            if not text:
                continue
            outcome.pieces += 1
            out, outcome.stopped = cutter.feed(text)
            if out:
                yield out
            if outcome.stopped:
                cancel.set()
                break
        if outcome.stopped:
            break
    if not outcome.stopped:
        tail = cutter.flush()
        if tail:
            yield tail


def _request_options(params: GenerationSettings) -> dict[str, Any]:
    """The llama.cpp request fields for a request's options (``RequestParams``)."""
    body: dict[str, Any] = {}
    for name in ("presence_penalty", "frequency_penalty"):
        if value := wants(params, name):
            body[name] = value
    if bias := wants(params, "logit_bias"):
        # OpenAI's -100 means "never": llama.cpp's ``false`` bans the token outright.
        body["logit_bias"] = [[tok, False if b <= -100 else b] for tok, b in bias.items()]
    if wants(params, "logprobs"):
        body["n_probs"] = max(1, wants(params, "top_logprobs") or 0)
    if grammar := wants(params, "grammar"):
        body["grammar"] = grammar
    return body


def _logprob_entries(logprobs: Any) -> list[dict[str, Any]]:
    """llama.cpp's per-token entries in the OpenAI chat shape (its ids dropped)."""
    if not isinstance(logprobs, dict):
        return []
    out = []
    for entry in logprobs.get("content") or []:
        out.append(
            {
                "token": entry.get("token", ""),
                "logprob": float(entry.get("logprob", 0.0)),
                "bytes": entry.get("bytes"),
                "top_logprobs": [
                    {
                        "token": t.get("token", ""),
                        "logprob": float(t.get("logprob", 0.0)),
                        "bytes": t.get("bytes"),
                    }
                    for t in entry.get("top_logprobs") or []
                ],
            }
        )
    return out


def _error_of(chunk: Any) -> str | None:
    if not isinstance(chunk, dict):
        return "malformed chunk"
    error = chunk.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if error:
        return str(error)
    if "code" in chunk and "message" in chunk and "choices" not in chunk:
        return str(chunk["message"])
    return None
