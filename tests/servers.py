"""The app on a real port, for tests that need a real HTTP server (the openai client, raw
sockets, the browser).

Every such fixture goes through ``serve_app``; they differ only in the services the app runs on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from tests.waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(app: FastAPI, *, start_timeout: float = 60) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yield its base URL.

    Stops the server on exit. A browser tab still connected to it keeps the shutdown waiting
    (Gradio's event streams), so the browser ``page`` fixture closes its tab first.
    """
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: server.started or not thread.is_alive(),
            timeout=start_timeout,
            message="the app server to start",
        )
        assert server.started, "the app server stopped while starting"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
