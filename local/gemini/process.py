"""The local Gemini server as a subprocess of the bot, restarted on its port whenever it exits."""

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import BinaryIO

import aiohttp

from bot.core.restart import RestartBackoff
from local.lifetime import die_with_parent

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).parents[2]  # no resolve(): a syscall, and this module is imported on the event loop


class LocalGeminiStartError(RuntimeError):
    """An embedded back end did not come up; the message says which and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _wait_http(http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if proc.returncode is not None:
                raise LocalGeminiStartError(f"the local Gemini server exited with code {proc.returncode}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


class LocalGeminiServer:
    """`python -m local.gemini` on one port of 127.0.0.1, started again on that port whenever it exits.

    The workers were given its URL when they started, so it must come back where it was. While it is down their
    calls are refused, exactly as when Google's API is unreachable: they go through the workers' and the
    dispatcher's retries for an upstream outage. Each exit and each restart is logged at WARNING.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        api_key: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 30.0,
        backoff: RestartBackoff | None = None,
    ) -> None:
        self._http = http
        self._log_path = log_path
        self._env = {**os.environ, **(env or {}), "LOCAL_GEMINI_API_KEY": api_key}
        self._start_timeout_s = start_timeout_s
        self._backoff = backoff or RestartBackoff(first_s=0.5, cap_s=30.0, stable_s=60.0)
        self._port = 0
        self._log_file: BinaryIO | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        """The server's base URL (the same across restarts)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        """The current process's id (tests and chaos drills kill it)."""
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        """Start the server on a free port, wait until it answers, then keep it running.

        Raises:
            LocalGeminiStartError: it exited or did not answer within the start timeout.
        """
        self._port = await asyncio.to_thread(free_port)
        await asyncio.to_thread(self._log_path.parent.mkdir, parents=True, exist_ok=True)
        self._log_file = await asyncio.to_thread(self._log_path.open, "ab")
        proc = await self._spawn()
        await self._wait_answering(proc)
        log.info("local Gemini server on %s (log: %s)", self.url, self._log_path)
        self._keeper = asyncio.create_task(self._keep_running(proc), name="local-gemini-keeper")

    async def close(self) -> None:
        """Stop restarting it, then stop it (SIGTERM, SIGKILL after 5 s)."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log_file is not None:
            await asyncio.to_thread(self._log_file.close)
            self._log_file = None

    async def _spawn(self) -> asyncio.subprocess.Process:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "local.gemini",
            "--port",
            str(self._port),
            cwd=PROJECT_ROOT,
            env=self._env,
            stdout=self._log_file,
            stderr=self._log_file,
            preexec_fn=die_with_parent(),  # a killed bot leaves no server behind
        )
        return self._proc

    async def _wait_answering(self, proc: asyncio.subprocess.Process) -> None:
        try:
            await _wait_http(self._http, f"{self.url}/stats", proc, self._start_timeout_s)
        except TimeoutError as exc:
            raise LocalGeminiStartError(
                f"the local Gemini server did not answer within {self._start_timeout_s:.0f} s"
            ) from exc

    async def _keep_running(self, proc: asyncio.subprocess.Process) -> None:
        started = time.monotonic()
        while True:
            returncode = await proc.wait()
            delay = self._backoff.after_exit(time.monotonic() - started)
            log.warning(
                "local Gemini server (pid %d) exited with code %s; restarting it on %s in %.1f s",
                proc.pid,
                returncode,
                self.url,
                delay,
                extra={"action": "restart"},
            )
            await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                proc = await self._spawn()
                await self._wait_answering(proc)
            except (OSError, LocalGeminiStartError) as exc:  # the port taken meanwhile, a broken install…
                log.error("local Gemini server did not come back on %s: %s (log: %s)", self.url, exc, self._log_path)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                continue  # `proc.wait()` returns at once: the next attempt waits longer
            self.restarts += 1
            log.warning(
                "local Gemini server restarted on %s (pid %d, restart %d)",
                self.url,
                proc.pid,
                self.restarts,
                extra={"action": "restart"},
            )


@contextlib.asynccontextmanager
async def local_gemini_process(
    http: aiohttp.ClientSession,
    *,
    api_key: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> AsyncIterator[LocalGeminiServer]:
    """Run `python -m local.gemini` on a free port, restarted there whenever it exits; yield it."""
    server = LocalGeminiServer(http, api_key=api_key, log_path=log_path, env=env, start_timeout_s=timeout_s)
    try:
        await server.start()
        yield server
    finally:
        await server.close()
