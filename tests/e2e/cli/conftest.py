"""Helpers for driving `python -m bot batch|imagine` as real subprocesses against the embedded stack.

The CLI starts its own local RunPod endpoint with real `python -m worker` subprocesses. The tests that kill the
CLI run one standalone local Gemini server themselves (a child of the CLI dies with it, and so would its
`/stats`) and point the CLI at it with `GEMINI_API_KEY` + `GEMINI_BASE_URL`; its request count then adds up over
every run of the CLI.
"""

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
GEMINI_KEY = "local-gemini-e2e-key"
DRAW_PX = "32"
POLL_INTERVAL_S = "0.1"  # the dispatcher's /status polls: a finished chunk is seen within 0.1 s, not 0.5 s
# What the CLI must not inherit from the machine's environment: real accounts, or settings that change the stack.
_DROPPED_PREFIXES = ("RUNPOD_", "GEMINI_", "STORAGE_", "LOCAL_GEMINI_", "DISCORD_", "LEDGER_", "DATA_DIR", "WORKER_")


def make_zip(path: Path, n: int, *, extra: Mapping[str, bytes] | None = None) -> Path:
    """Write a ZIP of `n` distinct small PNGs named `img/p00000.png`… (plus any `extra` entries)."""
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(n):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 77)).save(buf, "PNG")
            archive.writestr(f"img/p{i:05d}.png", buf.getvalue())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def base_env(**extra: str) -> dict[str, str]:
    """Return a clean environment for a CLI or server subprocess, with `extra` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    env["LOCAL_GEMINI_DRAW_PX"] = DRAW_PX
    env["POLL_INTERVAL_S"] = POLL_INTERVAL_S
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GeminiServer:
    """A standalone `python -m local.gemini` on 127.0.0.1."""

    url: str
    proc: subprocess.Popen[bytes]

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=5) as resp:
            return {k: int(v) for k, v in json.loads(resp.read()).items() if isinstance(v, int | float)}

    def cli_env(self, **extra: str) -> dict[str, str]:
        """The environment that points the CLI's workers at this server."""
        return base_env(GEMINI_API_KEY=GEMINI_KEY, GEMINI_BASE_URL=self.url, **extra)


@pytest.fixture
def start_gemini(tmp_path: Path) -> Iterator[Callable[..., GeminiServer]]:
    """Start a standalone local Gemini server with `LOCAL_GEMINI_*` settings; it is stopped after the test."""
    servers: list[GeminiServer] = []

    def start(**settings: str) -> GeminiServer:
        port = free_port()
        env = base_env(LOCAL_GEMINI_API_KEY=GEMINI_KEY, **{f"LOCAL_GEMINI_{k.upper()}": v for k, v in settings.items()})
        log = (tmp_path / f"gemini-{port}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.gemini", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        server = GeminiServer(url=f"http://127.0.0.1:{port}", proc=proc)
        servers.append(server)
        deadline = time.monotonic() + 20
        while True:
            try:
                server.stats()
                return server
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the local Gemini server did not start") from None
                time.sleep(0.1)

    yield start
    for server in servers:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@dataclass
class CliRun:
    """A finished CLI process."""

    returncode: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, object]:
        """The `--json` summary (the last stdout line)."""
        data = json.loads(self.stdout.strip().splitlines()[-1])
        assert isinstance(data, dict)
        return data


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_cli_left_behind() -> Iterator[None]:
    """Kill the process group of any CLI a test started and did not see end (a failure or a timeout)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start_cli(
    args: list[str], *, cwd: Path, env: Mapping[str, str], log_name: str = "cli", stdin: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """Start `python -m bot …` in `cwd` (its stdout and stderr go to files there).

    Its stdin is empty, not the terminal pytest may run in (a question would wait forever), unless `stdin` is
    given (a pseudo-terminal's descriptor, to answer).
    """
    with (cwd / f"{log_name}.out").open("w") as out, (cwd / f"{log_name}.err").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", *args],
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    _STARTED.append(proc)
    return proc


def finish_cli(proc: subprocess.Popen[str], *, cwd: Path, log_name: str = "cli", timeout_s: float = 120) -> CliRun:
    """Wait for a CLI process and collect its output."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return CliRun(
        returncode=proc.returncode,
        stdout=(cwd / f"{log_name}.out").read_text(),
        stderr=(cwd / f"{log_name}.err").read_text(),
    )


def run_cli(args: list[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float = 120) -> CliRun:
    """Run `python -m bot …` to the end."""
    return finish_cli(start_cli(args, cwd=cwd, env=env), cwd=cwd, timeout_s=timeout_s)


def read_results(path: Path) -> tuple[list[str], dict[str, object]]:
    """Return the member names of a results ZIP and its parsed `manifest.json`."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        for name in names:
            if name.endswith(".png"):
                assert archive.read(name).startswith(b"\x89PNG"), name
    return names, manifest
