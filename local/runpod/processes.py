"""The local endpoint's worker processes: their environment, their output relayed to logging, their end."""

import asyncio
import logging
import re
import sys
from pathlib import Path

worker_log = logging.getLogger("local.runpod.worker")
# a worker output line's level, in the SDK's format (`ERROR  | …`) or the worker's (`2026-01-02 03:04:05,678 ERROR …`)
WORKER_LEVEL = re.compile(r"(?:\d{4}-\d\d-\d\d [\d:,]+ )?(ERROR|CRITICAL|WARNING|WARN)\b")

PROJECT_ROOT = Path(__file__).parents[2]  # no resolve(): a syscall, and this module is imported on the event loop
DEFAULT_WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "worker")

# Variables of the bot's environment a worker may see (production workers get only their own settings).
PASS_THROUGH_PREFIXES = ("STORAGE_", "GEMINI_", "WORKER_", "GOOGLE_", "AWS_", "BUCKET_", "PYTHON", "LC_")
PASS_THROUGH_NAMES = frozenset(
    {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR", "RUNPOD_LOG_LEVEL"}
)


async def exited(proc: asyncio.subprocess.Process) -> int:
    """Wait for the process itself to exit.

    Not `proc.wait()`: on Python 3.11 that also waits for every holder of the stdout pipe to close it, and the SDK's
    heartbeat child outlives a worker that dies abruptly (`os._exit`, OOM). Its group is killed once this returns.
    """
    while True:  # the transport sets returncode from its child watcher; nothing to await on 3.11 but the pipes
        if proc.returncode is not None:
            return proc.returncode
        await asyncio.sleep(0.1)


async def relay_output(worker_id: str, proc: asyncio.subprocess.Process) -> None:
    """Log each line the worker prints, at the level `relayed_level` gives it, until its output ends."""
    stream = proc.stdout
    if stream is None:
        return
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line over the limit: drop what is buffered and go on
            await stream.read(1 << 20)
            continue
        if not line:
            return
        text = line.decode(errors="replace").rstrip()
        worker_log.log(relayed_level(text), "[%s] %s", worker_id, text)


def relayed_level(line: str) -> int:
    """Return the level a worker's output line is relayed at.

    Errors and tracebacks at WARNING, so an operator sees them with no flag; warnings at INFO, since a worker
    warns of every retried Gemini call and failed item, which the progress and the manifest already count;
    the rest at DEBUG.
    """
    if line.startswith("Traceback "):
        return logging.WARNING
    found = WORKER_LEVEL.match(line)
    if found is None:
        return logging.DEBUG
    return logging.WARNING if found[1] in ("ERROR", "CRITICAL") else logging.INFO


async def finish_relay(relay: "asyncio.Task[None]") -> None:
    """Let the relay read what the exited worker left in the pipe (1 s at most), then stop it."""
    try:
        await asyncio.wait_for(asyncio.shield(relay), 1.0)
    except TimeoutError:
        relay.cancel()
    except asyncio.CancelledError:
        relay.cancel()
        raise
