"""A real OpenAI-compatible server for tests: llama.cpp (xllamacpp, in-process) on 127.0.0.1
serving the bundled GGUF under the name ``smollm2``, behind an API key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from agents.llm.model_source import bundled_gguf_path

SERVED_NAME = "smollm2"


@contextmanager
def serve_bundled_model(api_key: str) -> Iterator[str]:
    """The server's base URL (``http://127.0.0.1:<port>/v1``) while the block runs."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(bundled_gguf_path())
    params.model_alias = [SERVED_NAME]
    params.api_keys = [api_key]
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.n_parallel = 1
    params.n_ctx = 2048
    params.cpuparams.n_threads = 1
    params.verbosity = -1
    server = xlc.Server(params)
    try:
        yield f"{server.listening_address}/v1"
    finally:
        del server
