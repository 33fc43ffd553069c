"""Helpers for HTTP tests: the test model config, an in-process server in a thread, a `sie-agents serve` process.

Servers bind 127.0.0.1 on a free port only.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

# The seed's model ids, pointed at weights that exist offline: real all-MiniLM-L6-v2 weights for the encoder,
# tiny random local models for the reranker and the extractor (no real weights for them exist here).
SEED_ENCODER = "NovaSearch/stella_en_400M_v5"
SEED_RERANKER = "BAAI/bge-reranker-v2-m3"
SEED_EXTRACTOR = "urchade/gliner_multi-v2.1"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TINY_ENCODER = "tiny/encoder"


def write_model_config(folder: Path, tiny: dict[str, Path], minilm: Path) -> Path:
    """A TOML config whose [[models]] point the seed's ids (and tiny/encoder) at local folders."""
    entries = [
        (SEED_ENCODER, "encode", minilm),
        (SEED_RERANKER, "score", tiny["cross_encoder"]),
        (SEED_EXTRACTOR, "extract", tiny["gliner"]),
        (TINY_ENCODER, "encode", tiny["encoder"]),
    ]
    text = "".join(f'[[models]]\nid = "{i}"\ntask = "{t}"\npath = "{p}"\n\n' for i, t, p in entries)
    path = folder / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def free_socket() -> socket.socket:
    """A listening socket on 127.0.0.1 with a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


@contextmanager
def serve_in_thread(app: Any, settings: Any = None) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL; stops it afterwards.

    With ``settings`` (a ServerSettings), uvicorn runs as ``sie-agents serve`` runs it (connection timers).
    """
    import uvicorn

    sock = free_socket()
    port = sock.getsockname()[1]
    if settings is not None:
        from sie_server.serve import uvicorn_config

        config = uvicorn_config(app, settings)
    else:
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class ServeProcess:
    """A `sie-agents serve` subprocess (stderr goes to a file, read for the 'listening on' line)."""

    def __init__(
        self, args: list[str], log: Path, env: dict[str, str] | None = None, python_args: list[str] | None = None
    ) -> None:
        self.log = log
        self._file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
        full_env.pop("SIE_BASE_URL", None)
        # python_args replaces ``-m sie_core`` (e.g. ``-c <script>`` that patches something, then runs the CLI)
        self.proc = subprocess.Popen(
            [sys.executable, *(python_args or ["-m", "sie_core"]), "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._file,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )
        self.url = self._wait_listening()

    def _wait_listening(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(encoding="utf-8", errors="replace")
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
            if match:
                url = match.group(1)
                while time.monotonic() < deadline:  # the socket listens already; wait for the app
                    try:
                        if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                            return url
                    except httpx.TransportError:
                        pass
                    time.sleep(0.05)
            if self.proc.poll() is not None:
                raise RuntimeError(f"sie-agents serve exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sie-agents serve did not start:\n{self.log.read_text(errors='replace')}")

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM, wait, return the exit code."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._file.close()
        return self.proc.returncode

    def output(self) -> str:
        """What the server logged."""
        return self.log.read_text(encoding="utf-8", errors="replace")
