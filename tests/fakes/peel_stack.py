"""The whole Peel stack for end-to-end tests: the playground, the runtime on embedded back ends, and PeelBot.

`async with peel_stack(tmp_path) as stack:` starts everything on 127.0.0.1 (the local Gemini server drawing small
images, the local RunPod endpoint with real worker subprocesses, a file store and a SQLite ledger under
`tmp_path`); `await stack.restart_bot()` stops the bot and its runtime and starts new ones over the same data, as a
redeploy would, while the playground (Discord) stays up.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app.runtime import Runtime, open_runtime
from bot.discord_bot import PeelBot
from bot.exts._access import AccessPolicy
from bot.settings import BotSettings
from local.discord import Playground
from local.discord.driver import Driver

DEFAULT_WORKER_ENV = {"LOCAL_GEMINI_DRAW_PX": "64", "LOCAL_GEMINI_LATENCY": "0.05"}
# Discord's rate limits at a tenth of their windows (message edits: 5 per channel per 0.5 s instead of 5 s):
# discord.py still meets every limit and waits it out from the headers, as in production, but a module of tests
# posting in one channel waits 0.5 s where it would wait 5 s (the bot paces its own edits to the same window).
RATE_WINDOW_SCALE = 0.1
EDIT_WINDOW_S = 5.0 * RATE_WINDOW_SCALE
DEFAULT_PLAYGROUND = {"rate_window_scale": RATE_WINDOW_SCALE}
# discord.py waits this long after the last GUILD_CREATE before `on_ready` (2 s by default); the playground has one
# guild, sent at once.
GUILD_READY_TIMEOUT_S = 0.1


def make_settings(data_dir: Path, **overrides: Any) -> BotSettings:
    """Settings for a test stack: everything embedded, free ports, data under `data_dir`."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "storage_url": f"file://{data_dir / 'store'}",  # absolute already: resolving a path would block the loop
        "web_port": 0,
        "playground_port": 0,
        "local_workers": 2,
        "poll_interval_s": 0.1,
        # Chunks of a few rounds, as at real latencies, so that a pause or a cancel lands while a batch still
        # has items waiting (at the 60 s default, against this fast Gemini, all of a test batch goes at once).
        "batch_chunk_s": 0.5,
        "batch_fetch_allowed_networks": ["127.0.0.0/8"],
        "channel_edit_window_s": EDIT_WINDOW_S,
    }
    values.update(overrides)
    return BotSettings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings' init kwarg


@dataclass
class PeelStack:
    """A running stack; `driver("alice")` acts as a user."""

    pg: Playground
    settings: BotSettings
    worker_env: Mapping[str, str]
    access: AccessPolicy
    runtime: Runtime | None = None
    bot: PeelBot | None = None
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _connection: asyncio.Task[None] | None = None

    def driver(self, user: str = "alice") -> Driver:
        return self.pg.driver(user)

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    async def gemini_stats(self) -> dict[str, Any]:
        stats = await self.rt.backends.gemini_stats()
        assert stats is not None
        return dict(stats)

    async def start_bot(self) -> PeelBot:
        self.runtime = await self._stack.enter_async_context(open_runtime(self.settings, worker_env=self.worker_env))
        bot = PeelBot(self.runtime, access=self.access, sync_guild_id=int(self.pg.state.guild_id))
        bot._connection.guild_ready_timeout = GUILD_READY_TIMEOUT_S
        await bot.login(self.pg.token)
        self._connection = asyncio.create_task(bot.connect(reconnect=False))
        await asyncio.wait_for(bot.wait_until_ready(), 20)
        assert self.runtime.backends.endpoint is not None
        await self.runtime.backends.endpoint.wait_ready(timeout_s=30)
        self.bot = bot
        return bot

    async def stop_bot(self) -> None:
        if self.bot is not None:
            await self.bot.close()
            if self._connection is not None:
                await asyncio.wait_for(self._connection, 10)
            self.bot = None
        await self._stack.aclose()
        self._stack = contextlib.AsyncExitStack()
        self.runtime = None

    async def restart_bot(self) -> PeelBot:
        await self.stop_bot()
        return await self.start_bot()


@contextlib.asynccontextmanager
async def peel_stack(
    data_dir: Path,
    *,
    worker_env: Mapping[str, str] | None = None,
    access: AccessPolicy | None = None,
    playground: Mapping[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[PeelStack]:
    """Start the playground, then the runtime and the bot connected to it; stop all of it afterwards."""
    async with Playground(**{**DEFAULT_PLAYGROUND, **(playground or {})}) as pg:
        with pg.discord_py():
            stack = PeelStack(
                pg=pg,
                settings=make_settings(data_dir, **settings),
                worker_env={**DEFAULT_WORKER_ENV, **(worker_env or {})},
                # The playground's "admin" is a Peel admin by configuration, as in production (its guild
                # Administrator permission alone is not).
                access=access or AccessPolicy(admin_user_ids=frozenset({int(pg.state.owner_id)})),
            )
            try:
                await stack.start_bot()
                yield stack
            finally:
                await stack.stop_bot()
