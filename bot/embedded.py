"""The back ends the bot talks to, real or embedded: a RunPod gateway, the store, and the Gemini server behind it.

With no RunPod settings the bot runs the local RunPod-compatible endpoint in its own process, whose workers are
the real `python -m worker` subprocesses; with no Gemini key those workers talk to the local Gemini-compatible
server, started here as a subprocess (so its drawing never competes with the bot's event loop). With the settings
set, the same code path reaches the real services; only URLs and keys change (DESIGN.md).
"""

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import aiohttp

from bot.core.restart import RestartBackoff
from bot.runpod.client import RunpodHttpGateway
from bot.runpod.local_endpoint import LocalEndpoint, die_with_parent
from bot.settings import BotSettings
from storage import Store, open_store

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class EmbeddedStartError(RuntimeError):
    """An embedded back end did not come up; the message says which and where its log is."""


@dataclass(slots=True, kw_only=True)
class Backends:
    """What the dispatcher and the Discord layer need, with the embedded servers kept alive behind it."""

    gateway: RunpodHttpGateway
    store: Store
    http: aiohttp.ClientSession
    store_url: str
    gemini_url: str | None = None  # the local Gemini server's base URL, when it runs
    gemini_server: "LocalGeminiServer | None" = None
    endpoint: LocalEndpoint | None = None
    notes: list[str] = field(default_factory=list)

    async def gemini_stats(self) -> Mapping[str, object] | None:
        """Return the local Gemini server's `/stats`, or None when it does not run."""
        if self.gemini_url is None:
            return None
        async with self.http.get(f"{self.gemini_url}/stats") as resp:
            data = await resp.json()
        return data if isinstance(data, dict) else None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _wait_http(http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if proc.returncode is not None:
                raise EmbeddedStartError(f"the local Gemini server exited with code {proc.returncode}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


class LocalGeminiServer:
    """`python -m worker.local_gemini` on one port of 127.0.0.1, started again on that port whenever it exits.

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
            EmbeddedStartError: it exited or did not answer within the start timeout.
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
            "worker.local_gemini",
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
            raise EmbeddedStartError(
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
            except (OSError, EmbeddedStartError) as exc:  # the port taken meanwhile, a broken install…
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
    """Run `python -m worker.local_gemini` on a free port, restarted there whenever it exits; yield it."""
    server = LocalGeminiServer(http, api_key=api_key, log_path=log_path, env=env, start_timeout_s=timeout_s)
    try:
        await server.start()
        yield server
    finally:
        await server.close()


def worker_environment(
    settings: BotSettings, *, store_url: str, gemini_url: str | None, gemini_key: str
) -> dict[str, str]:
    """Return the settings the embedded workers get (the real services' keys only when configured)."""
    env = {"STORAGE_URL": store_url, "GEMINI_API_KEY": gemini_key, "GEMINI_MODEL": settings.gemini_model}
    # More job slots per worker than the dispatcher fills: the runpod SDK stops asking for jobs while a worker is
    # full and looks again only a second later (rp_scale.JobScaler.get_jobs), which would delay every next chunk.
    env["WORKER_MAX_CONCURRENT_JOBS"] = os.environ.get("WORKER_MAX_CONCURRENT_JOBS", "4")
    base = gemini_url or settings.gemini_base_url
    if base:
        env["GEMINI_BASE_URL"] = base
    return env


@contextlib.asynccontextmanager
async def open_backends(
    settings: BotSettings, *, worker_env: Mapping[str, str] | None = None
) -> AsyncIterator[Backends]:
    """Open the store and the RunPod gateway, starting the embedded servers the settings leave unconfigured.

    Args:
        settings: the bot's settings.
        worker_env: extra environment for embedded workers and the local Gemini server (tests and benchmarks set
            `LOCAL_GEMINI_*` fault injection and drawing size here).
    """
    store_url = settings.resolved_storage_url
    if store_url.startswith("file://"):
        await asyncio.to_thread(Path(store_url.removeprefix("file://")).mkdir, parents=True, exist_ok=True)
    store = open_store(store_url)
    logs = settings.data_dir / "logs"
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        gemini_url: str | None = None
        gemini_server: LocalGeminiServer | None = None
        if settings.uses_local_gemini:
            gemini_key = f"local-{secrets.token_urlsafe(12)}"
            gemini_server = await stack.enter_async_context(
                local_gemini_process(http, api_key=gemini_key, log_path=logs / "local_gemini.log", env=worker_env)
            )
            gemini_url = gemini_server.url
        else:
            assert settings.gemini_api_key is not None
            gemini_key = settings.gemini_api_key.get_secret_value()
        endpoint: LocalEndpoint | None = None
        if settings.uses_local_runpod:
            env = {
                **worker_environment(settings, store_url=store_url, gemini_url=gemini_url, gemini_key=gemini_key),
                **(worker_env or {}),
            }
            endpoint = await stack.enter_async_context(LocalEndpoint(workers=settings.local_workers, env=env))
            gateway = RunpodHttpGateway(
                http, endpoint_id=endpoint.endpoint_id, api_key=endpoint.api_key, base_url=endpoint.base_url
            )
        else:
            assert settings.runpod_endpoint_id is not None
            assert settings.runpod_api_key is not None
            gateway = RunpodHttpGateway(
                http,
                endpoint_id=settings.runpod_endpoint_id,
                api_key=settings.runpod_api_key,
                base_url=settings.runpod_api_base,
            )
        yield Backends(
            gateway=gateway,
            store=store,
            http=http,
            store_url=store_url,
            gemini_url=gemini_url,
            gemini_server=gemini_server,
            endpoint=endpoint,
        )
