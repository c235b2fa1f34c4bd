"""The embedded default chain: an anvil node (npm ``@foundry-rs/anvil``) the app runs itself.

anvil is a real EVM node (cancun, automine) that starts in about 0.1 s. It listens on
127.0.0.1 only, and ``--state`` keeps the whole chain in ``<data_dir>/chain/anvil-state.json``:
anvil loads it on start, writes it every second and again on a clean stop (SIGTERM), so a
restart of the app, or of the node alone, keeps every token.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from web3 import Web3
from web3.types import RPCEndpoint

from core.errors import ChainUnavailableError

log = logging.getLogger(__name__)

CHAIN_DIR = Path(__file__).resolve().parent
DEFAULT_CHAIN_ID = 31337
START_TIMEOUT_S = 20.0


def find_anvil(configured: Path | None = None) -> Path:
    """The anvil binary: configured, else the one ``npm ci`` put in ``chain/node_modules``."""
    if configured is not None:
        if not configured.is_file():
            raise ChainUnavailableError(f"ANIMA_CHAIN_ANVIL_BIN {configured} does not exist")
        return configured
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = {"linux": "linux", "darwin": "darwin", "windows": "win32"}[platform.system().lower()]
    exe = "anvil.exe" if system == "win32" else "anvil"
    bundled = CHAIN_DIR / "node_modules" / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / exe
    if bundled.is_file():
        return bundled
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise ChainUnavailableError(
        "anvil is not installed: run `make install` (npm ci in chain/) or set ANIMA_CHAIN_ANVIL_BIN"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AnvilChain:
    """Starts, watches and stops one anvil process bound to 127.0.0.1."""

    kind = "anvil"
    is_dev = True

    def __init__(
        self,
        state_file: Path,
        chain_id: int = DEFAULT_CHAIN_ID,
        port: int = 0,
        binary: Path | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.state_file = state_file
        self.chain_id = chain_id
        self.port = port or free_port()  # chosen once: the URL stays the same across restarts
        self.binary = binary
        self.log_file = log_file or state_file.with_name("anvil.log")
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 10}))

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def web3(self) -> Web3:
        return self._w3

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            binary = find_anvil(self.binary)
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            args = [
                str(binary),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--chain-id", str(self.chain_id),
                "--state", str(self.state_file),
                "--state-interval", "1",
            ]  # fmt: skip
            with open(self.log_file, "ab") as out:
                self._process = subprocess.Popen(
                    args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
            deadline = time.monotonic() + START_TIMEOUT_S
            while not self.is_up():
                if self._process.poll() is not None:
                    tail = self._log_tail()
                    self._process = None
                    raise ChainUnavailableError(f"anvil exited at start: {tail}")
                if time.monotonic() > deadline:
                    self._terminate()
                    raise ChainUnavailableError("anvil did not answer within 20 s")
                time.sleep(0.05)
            log.info("anvil on %s (pid %s, state %s)", self.rpc_url, self.pid, self.state_file)

    def stop(self) -> None:
        """SIGTERM, so anvil writes its state; SIGKILL only if it hangs."""
        with self._lock:
            self._terminate()

    def kill(self) -> None:
        """Stop the node abruptly, as a crash would (tests of the node going down)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)
            self._process = None

    def is_up(self) -> bool:
        try:
            return (
                int(self._w3.provider.make_request(RPCEndpoint("eth_chainId"), [])["result"], 16)
                > 0
            )
        except Exception:
            return False

    def restart_if_stopped(self) -> bool:
        if self.is_up():
            return False
        log.warning("the anvil node stopped; restarting it (its state is kept)")
        self.start()
        return True

    def fund(self, address: str, wei: int) -> None:
        self._w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [address, hex(wei)])

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log.warning(
                "anvil did not stop on SIGTERM; killing it (state since the last dump is lost)"
            )
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _log_tail(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-500:].strip()
        except OSError:
            return "(no log)"
