"""Raw ``model.generate`` speed: the floor the served API is compared against.

``measure_raw`` streams greedy generations through a ``TextIteratorStreamer`` (what the
transformers backend does) but skips everything else Anima adds (prompt assembly, HTTP,
SSE), so ``bench/llm.py`` can show what the serving layers cost. ``min_new_tokens`` forces
every run to the same length so decode rates are comparable across runs and models.

Run alone: ``python -m bench.llm_raw`` (bundled model, settings from the environment).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

from agents.llm.transformers_backend import TransformersBackend
from agents.schema import ChatMessage


def measure_raw(
    backend_or_model: TransformersBackend | tuple[Any, Any],
    prompt_messages: list[ChatMessage] | list[dict[str, str]],
    max_new_tokens: int = 128,
    runs: int = 3,
) -> dict[str, Any]:
    """Median TTFT and decode rate of raw greedy ``generate`` over ``runs`` (after a warm-up).

    ``backend_or_model`` is a ``TransformersBackend`` (loaded here if needed) or a
    ``(model, tokenizer)`` pair. ``ttft_s`` is the time from calling ``generate`` until the
    first text reaches the consumer; ``decode_tok_s`` is (tokens - 1) / (time from the first
    to the last token), so it excludes the prompt's prefill.
    """
    from transformers import TextIteratorStreamer

    if isinstance(backend_or_model, TransformersBackend):
        backend_or_model.load()
        model, tokenizer = backend_or_model._model, backend_or_model._tokenizer
    else:
        model, tokenizer = backend_or_model
    messages = [m.model_dump() if isinstance(m, ChatMessage) else dict(m) for m in prompt_messages]
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    inputs = {k: v.to(model.device) for k, v in dict(encoded).items()}
    prompt_tokens = int(inputs["input_ids"].shape[1])

    class _TimedStreamer(TextIteratorStreamer):
        """Records when each generated token arrives (the first ``put`` is the prompt)."""

        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.token_times: list[float] = []
            self._saw_prompt = False

        def put(self, value: Any) -> None:
            if self._saw_prompt:
                self.token_times.append(time.perf_counter())
            self._saw_prompt = True
            super().put(value)

    def one_run() -> tuple[float, float, int]:
        streamer = _TimedStreamer()
        kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
        )
        thread = threading.Thread(target=model.generate, kwargs=kwargs, daemon=True)
        started = time.perf_counter()
        thread.start()
        first_text: float | None = None
        for text in streamer:
            if text and first_text is None:
                first_text = time.perf_counter() - started
        thread.join()
        times = streamer.token_times
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        rate = (len(times) - 1) / span if len(times) > 1 and span > 0 else float("nan")
        return first_text if first_text is not None else float("nan"), rate, len(times)

    one_run()  # warm-up: the first call pays one-off kernel and allocator setup
    samples = [one_run() for _ in range(runs)]
    return {
        "ttft_s": statistics.median(s[0] for s in samples),
        "decode_tok_s": statistics.median(s[1] for s in samples),
        "completion_tokens": samples[0][2],
        "prompt_tokens": prompt_tokens,
        "runs": runs,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "ttft_s_all": [round(s[0], 4) for s in samples],
        "decode_tok_s_all": [round(s[1], 2) for s in samples],
    }


if __name__ == "__main__":
    from core.settings import Settings

    backend = TransformersBackend(Settings())
    prompt = [
        ChatMessage(role="system", content="You are Luna, a cheerful cat who loves stories."),
        ChatMessage(role="user", content="Tell me about your favourite place to nap."),
    ]
    print(json.dumps(measure_raw(backend, prompt, max_new_tokens=128, runs=3), indent=2))
