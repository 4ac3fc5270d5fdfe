"""Tells Peel's admins, once per incident, that RunPod or Gemini is down, refuses Peel's configuration, or is back.

The dispatcher logs each incident once at ERROR; this cog posts the same news to `ADMIN_CHANNEL_ID` when it is set.
It only translates: the texts are `bot.core.render`'s, the events the dispatcher's.
"""

import asyncio
import contextlib
import logging
from typing import Any

import discord
from discord.ext import commands

from bot.app.account import AccountService
from bot.core.events import ConfigError, Event, ServiceDown, ServiceRestored
from bot.core.render import config_error_text, discord_time, service_down_text, service_restored_text
from bot.exts._send import fit_content

log = logging.getLogger(__name__)


def alert_text(event: Event) -> str | None:
    """Return the admins' message for a service event (None for job events)."""
    if isinstance(event, ServiceDown):
        return service_down_text(event.service, discord_time(event.since), event.reason)
    if isinstance(event, ServiceRestored):
        return service_restored_text(event.service, event.down_for)
    if isinstance(event, ConfigError):
        return config_error_text(event.service, event.detail, event.fix)
    return None


class AlertsCog(commands.Cog):
    """Posts service incidents to the admin channel."""

    def __init__(self, bot: commands.Bot, account: AccountService, channel_id: int) -> None:
        self.bot = bot
        self._account = account
        self._channel_id = channel_id
        self._task: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        """Start listening to the dispatcher."""
        subscription = self._account.events()
        self._task = asyncio.create_task(self._listen(subscription), name="peel-admin-alerts")

    async def cog_unload(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self, subscription: Any) -> None:
        with subscription:
            async for event in subscription:
                text = alert_text(event)
                if text is not None:
                    await self._post(text)

    async def _post(self, text: str) -> None:
        channel = self.bot.get_partial_messageable(self._channel_id)
        try:
            await channel.send(fit_content(text), allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException as exc:  # the log already has the news; a wrong channel id must not stop Peel
            log.warning("could not post to ADMIN_CHANNEL_ID %s: %s", self._channel_id, exc)


async def setup(bot: commands.Bot) -> None:
    """Load the cog when `ADMIN_CHANNEL_ID` is set (discord.py's extension entry point)."""
    # PeelBot's attributes, without importing PeelBot (a cycle), as the other extensions do.
    runtime, services = getattr(bot, "runtime"), getattr(bot, "services")  # noqa: B009
    channel_id = runtime.settings.admin_channel_id
    if channel_id is not None:
        await bot.add_cog(AlertsCog(bot, services.account, channel_id))
