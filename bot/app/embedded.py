"""The back ends the bot talks to, real or embedded: a RunPod gateway, the store, and the Gemini server behind it.

With no RunPod settings the bot runs the local RunPod-compatible endpoint in its own process, whose workers are
the real `python -m worker` subprocesses; with no Gemini key those workers talk to the local Gemini-compatible
server, started here as a subprocess (so its drawing never competes with the bot's event loop). With the settings
set, the same code path reaches the real services; only URLs and keys change (docs/architecture.md).

The stand-ins live outside the product, in `local/`: they are imported here only when the settings leave a
service unconfigured, so a bot configured for the real services never loads them.
"""

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from pydantic import SecretStr

from bot.runpod.client import Backoff, RunpodHttpGateway
from bot.settings import BotSettings
from storage import Store, open_store

if TYPE_CHECKING:
    from local.gemini.process import LocalGeminiServer
    from local.runpod import LocalEndpoint

log = logging.getLogger(__name__)

# The dispatcher's RunPod calls give up within seconds, so that a dead endpoint opens its breaker (and users and
# admins hear of it) quickly: 3 attempts over about a second for refused connections and 5xx, 10 s per attempt for
# a host that does not answer. The breaker then probes on its own backoff; RunPod answers `/run` and `/status` in
# well under a second when it is up.
DISPATCH_REQUEST_TIMEOUT_S = 10.0
DISPATCH_BACKOFF = Backoff(max_attempts=3, base_delay_s=0.5, cap_s=4.0)


@dataclass(slots=True, kw_only=True)
class Backends:
    """What the dispatcher and the Discord layer need, with the embedded servers kept alive behind it."""

    gateway: RunpodHttpGateway
    store: Store
    http: aiohttp.ClientSession
    store_url: str
    gemini_key: SecretStr = field(default_factory=lambda: SecretStr(""))  # the key workers get (relax uses it too)
    gemini_base_url: str | None = None  # where Gemini is: the local server's URL, GEMINI_BASE_URL, or None (Google)
    gemini_url: str | None = None  # the local Gemini server's base URL, when it runs
    gemini_server: "LocalGeminiServer | None" = None
    endpoint: "LocalEndpoint | None" = None
    notes: list[str] = field(default_factory=list)

    async def gemini_stats(self) -> Mapping[str, object] | None:
        """Return the local Gemini server's `/stats`, or None when it does not run."""
        if self.gemini_url is None:
            return None
        async with self.http.get(f"{self.gemini_url}/stats") as resp:
            data = await resp.json()
        return data if isinstance(data, dict) else None


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
            from local.gemini.process import local_gemini_process  # the stand-in is imported only when it runs

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
            from local import runpod as local_runpod  # the stand-in is imported only when it runs

            env = {
                **worker_environment(settings, store_url=store_url, gemini_url=gemini_url, gemini_key=gemini_key),
                **(worker_env or {}),
            }
            endpoint = await stack.enter_async_context(
                local_runpod.LocalEndpoint(workers=settings.local_workers, env=env)
            )
            endpoint_id, api_key, base_url = endpoint.endpoint_id, SecretStr(endpoint.api_key), endpoint.base_url
        else:
            assert settings.runpod_endpoint_id is not None
            assert settings.runpod_api_key is not None
            endpoint_id, api_key, base_url = (
                settings.runpod_endpoint_id,
                settings.runpod_api_key,
                settings.runpod_api_base,
            )
        gateway = RunpodHttpGateway(
            http,
            endpoint_id=endpoint_id,
            api_key=api_key,
            base_url=base_url,
            request_timeout_s=DISPATCH_REQUEST_TIMEOUT_S,
            backoff=DISPATCH_BACKOFF,
        )
        yield Backends(
            gateway=gateway,
            store=store,
            http=http,
            store_url=store_url,
            gemini_key=SecretStr(gemini_key),
            gemini_base_url=gemini_url or settings.gemini_base_url,
            gemini_url=gemini_url,
            gemini_server=gemini_server,
            endpoint=endpoint,
        )
