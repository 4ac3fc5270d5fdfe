"""The local endpoint's worker processes: kept running, their environment, their output relayed to logging."""

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

from bot.core.restart import RestartBackoff
from local.lifetime import die_with_parent
from local.runpod.jobs import WorkerInfo
from local.runpod.queue import JobQueue

log = logging.getLogger(__name__)

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


class WorkerSupervisor(JobQueue):
    """Keeps the worker processes running: their environment, restarts with backoff, and their stop."""

    def worker_env(self, worker_id: str) -> dict[str, str]:
        """Return the environment a worker process gets."""
        env = {k: v for k, v in os.environ.items() if k in PASS_THROUGH_NAMES or k.startswith(PASS_THROUGH_PREFIXES)}
        env.update(self._extra_env)
        root = self.base_url.removesuffix("/v2") + f"/v2/{self.endpoint_id}"
        env.update(
            {
                # `$ID` and `$RUNPOD_POD_ID` are placeholders the SDK fills in; the query strings are needed because
                # the SDK appends `&job_in_progress=`, `&batch_size=` and `&isStream=`.
                "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID?gpu=none",
                "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID/$ID?gpu=none",
                "RUNPOD_WEBHOOK_POST_STREAM": f"{root}/job-stream/$RUNPOD_POD_ID/$ID?gpu=none",
                "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID?gpu=none",
                "RUNPOD_AI_API_KEY": self._worker_key,
                "RUNPOD_POD_ID": worker_id,
                "RUNPOD_POD_HOSTNAME": worker_id,
                "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
                "RUNPOD_SKIP_GPU_CHECK": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.setdefault("RUNPOD_LOG_LEVEL", "INFO")
        # The SDK's heartbeat uses `interval // 1000` seconds as its HTTP timeout; below 1 s that is 0 and the ping
        # process dies with a ValueError (runpod 1.12 rp_ping.py), so never go below 1000 ms.
        interval = env.get("RUNPOD_PING_INTERVAL", "")
        if interval and (not interval.isdigit() or int(interval) < 1000):
            env["RUNPOD_PING_INTERVAL"] = "1000"
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{PROJECT_ROOT}{os.pathsep}{path}" if path else str(PROJECT_ROOT)
        return env

    async def _supervise(self, slot: int) -> None:
        """Keep one worker process running in this slot, restarting it with backoff when it exits."""
        first, cap = self._restart_backoff_s
        backoff = RestartBackoff(first_s=first, cap_s=cap, stable_s=10 * first)
        while not self._closing:
            generation = self._slot_generation.get(slot, 0) + 1
            self._slot_generation[slot] = generation
            if generation > 1:
                self._restarts += 1
            worker_id = f"{self.endpoint_id}-w{slot + 1}-g{generation}"
            started = time.monotonic()
            worker = WorkerInfo(id=worker_id, slot=slot)
            self._workers[worker_id] = worker
            try:
                returncode = await self._run_process(worker)
            except OSError:
                log.exception("cannot start worker %s (%s)", worker_id, self._command[0])
                returncode = None
            self._worker_died(worker, returncode)
            if self.closing:
                return
            delay = backoff.after_exit(time.monotonic() - started)
            log.warning("worker %s exited (rc=%s); restarting in %.1fs", worker_id, returncode, delay)
            await asyncio.sleep(delay)

    async def _run_process(self, worker: WorkerInfo) -> int | None:
        proc = await asyncio.create_subprocess_exec(
            *self._command,
            env=self.worker_env(worker.id),
            cwd=self._cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the SDK's ping child dies with it
            preexec_fn=die_with_parent(),  # and no orphan when this process is killed
            limit=1 << 20,
        )
        worker.proc, worker.pid = proc, proc.pid
        restarted = worker.slot is not None and self._slot_generation.get(worker.slot, 1) > 1
        # A restart is the end of an outage the operator was warned of: at the same level as that warning.
        log.log(logging.WARNING if restarted else logging.INFO, "worker %s started (pid %d)", worker.id, proc.pid)
        relay = asyncio.create_task(relay_output(worker.id, proc))
        try:
            return await exited(proc)
        except asyncio.CancelledError:
            await self._stop_process(worker, proc)
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (the ping process)
            await finish_relay(relay)

    async def _stop_process(self, worker: WorkerInfo, proc: asyncio.subprocess.Process) -> None:
        self._retire(worker)
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(exited(proc), self._stop_grace_s)
        except TimeoutError:
            log.warning("worker %s ignored SIGTERM; killing it", worker.id)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await exited(proc)
