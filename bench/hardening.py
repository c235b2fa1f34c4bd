"""Hostile input against a real server: does it keep answering, and what does it cost?

Starts the app (from this checkout, or from ``--repo`` to compare another one, e.g. a checkout
from before the upload caps and RE2 lorebook keys) in its own process on a free port, then:

1. ``/api/health`` latency while a 20 MB upload is processed: a PNG card of noise (decoded
   to check it) and a CHARX of 200 assets (stored and fsynced), each uploaded ``--runs`` times
   while a poller asks for /api/health every 20 ms;
2. what a 600 kB PNG card that declares 13000 x 13000 pixels costs the server (peak RSS);
3. a PNG card whose ``chara`` chunk inflates to 60 MB: answer and time;
4. the lorebook key ``(a+)+$`` against a line of ``a`` + ``!``: Python's ``re`` versus RE2.

    python bench/hardening.py [--repo PATH] [--runs 3]

Prints one table; figures are medians over the runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import os, sys, uvicorn
sys.path.insert(0, os.getcwd())
from app import create_app
from core.settings import Settings
uvicorn.run(create_app(Settings()), host="127.0.0.1", port=int(os.environ["ANIMA_PORT"]),
            log_level="warning")
"""


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png(width: int, height: int, rows: bytes | None = None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    if rows is None:
        rows = b"".join(b"\0" + os.urandom(width * 3) for _ in range(height))
    idat = zlib.compress(rows, 1)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)


def _card_chunk(name: str) -> bytes:
    import base64

    card = {"spec": "chara_card_v2", "data": {"name": name}}
    return _chunk(b"tEXt", b"chara\0" + base64.b64encode(json.dumps(card).encode()))


def noise_card(megabytes: float) -> bytes:
    width = 2000
    height = int(megabytes * 1024 * 1024 / (width * 3))
    return _png(width, height) + _card_chunk("Noise") + _chunk(b"IEND", b"")


def asset_charx(megabytes: float, count: int = 200) -> bytes:
    out = io.BytesIO()
    each = int(megabytes * 1024 * 1024 / count)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("card.json", json.dumps({"spec": "chara_card_v3", "data": {"name": "A"}}))
        for i in range(count):
            archive.writestr(f"assets/other/{i}.bin", os.urandom(each))
    return out.getvalue()


def pixel_bomb() -> bytes:
    side = 13_000
    row = b"\0" * (1 + side * 3)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
    return head + _card_chunk("Huge") + _chunk(b"IEND", b"")


def text_bomb(megabytes: int = 60) -> bytes:
    text = json.dumps({"spec": "chara_card_v2", "data": {"name": "Bomb"}}).encode()
    text += b" " * (megabytes * 1024 * 1024)
    ztxt = _chunk(b"zTXt", b"chara\0\0" + zlib.compress(text, 9))
    return _png(8, 8) + ztxt + _chunk(b"IEND", b"")


class Server:
    def __init__(self, repo: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.data = tempfile.TemporaryDirectory(prefix="anima-bench-")
        env = {
            **os.environ,
            "ANIMA_PORT": str(self.port),
            "ANIMA_DATA_DIR": self.data.name,
            "ANIMA_LLM_PRELOAD": "false",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
        }
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=repo, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.data.cleanup()


def health_during(server: Server, method: str, path: str, blob: bytes) -> tuple[list[float], float]:
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as http:
            while not done.is_set():
                start = time.perf_counter()
                http.get(f"{server.url}/api/health")
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.1)
    start = time.perf_counter()
    resp = httpx.request(
        method, f"{server.url}{path}", files={"file": ("f.bin", blob)}, timeout=300
    )
    took = time.perf_counter() - start
    done.set()
    poller.join()
    if resp.status_code >= 300:
        raise RuntimeError(f"upload refused: {resp.status_code} {resp.text[:200]}")
    return latencies, took


def redos(n: int, engine: str) -> str:
    code = (
        "import sys, time, re\n"
        "import re2\n"
        f"text = 'a' * {n} + '!'\n"
        "t = time.perf_counter()\n"
        + (
            "re2.compile('(a+)+$').search(text)\n"
            if engine == "re2"
            else "re.compile('(a+)+$').search(text)\n"
        )
        + "print(time.perf_counter() - t)\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=20
        )
        return f"{float(out.stdout.strip()) * 1000:.2f} ms"
    except subprocess.TimeoutExpired:
        return "> 20 s (killed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout to serve")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows: list[tuple[str, str]] = []
    server = Server(args.repo)
    try:
        for label, method, path, blob in [
            ("PNG card, 20 MB of noise", "POST", "/api/agents/import", noise_card(19.5)),
            ("CHARX, 20 MB in 200 assets", "POST", "/api/agents/import", asset_charx(19.5)),
        ]:
            p50s, p95s, maxes, took = [], [], [], []
            for _ in range(args.runs):
                lat, seconds = health_during(server, method, path, blob)
                lat.sort()
                p50s.append(statistics.median(lat))
                p95s.append(lat[int(0.95 * (len(lat) - 1))])
                maxes.append(lat[-1])
                took.append(seconds)
            rows.append(
                (
                    f"/api/health during upload: {label}",
                    f"p50 {statistics.median(p50s) * 1000:.0f} ms, p95 "
                    f"{statistics.median(p95s) * 1000:.0f} ms, max "
                    f"{statistics.median(maxes) * 1000:.0f} ms "
                    f"(upload {statistics.median(took):.2f} s)",
                )
            )
        before = server.peak_rss_mb()
        bomb = pixel_bomb()
        start = time.perf_counter()
        resp = httpx.post(
            f"{server.url}/api/agents/import", files={"file": ("h.png", bomb)}, timeout=300
        )
        rows.append(
            (
                f"PNG card declaring 13000x13000 ({len(bomb) / 1e3:.0f} kB)",
                f"HTTP {resp.status_code} in {time.perf_counter() - start:.2f} s, "
                f"server peak RSS +{server.peak_rss_mb() - before:.0f} MB",
            )
        )
        before = server.peak_rss_mb()
        bomb = text_bomb()
        start = time.perf_counter()
        resp = httpx.post(
            f"{server.url}/api/agents/import", files={"file": ("t.png", bomb)}, timeout=300
        )
        rows.append(
            (
                f"PNG card, chara chunk inflating to 60 MB ({len(bomb) / 1e3:.0f} kB)",
                f"HTTP {resp.status_code} in {time.perf_counter() - start:.2f} s, "
                f"server peak RSS +{server.peak_rss_mb() - before:.0f} MB",
            )
        )
    finally:
        server.close()
    rows.append(("(a+)+$ on 'a' * 30 + '!': Python re", redos(30, "re")))
    rows.append(("(a+)+$ on 'a' * 100000 + '!': RE2", redos(100_000, "re2")))

    width = max(len(k) for k, _ in rows)
    print(f"repo: {args.repo}  runs: {args.runs}  load average at start: {load:.2f}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
