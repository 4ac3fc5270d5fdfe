"""A local Discord: REST API v10 and gateway for a real discord.py bot, a browser page, and a test driver.

Typical use::

    async with Playground(port=0) as pg:
        with discord_py_pointed_at(pg.api_base, pg.gateway_url):
            ...  # start the bot with pg.token
        alice = pg.driver("alice")
        await alice.slash("imagine", {"prompt": "a fox"})
"""

from local.discord.discord_py import discord_py_pointed_at, point_discord_py_at
from local.discord.driver import Driver, InteractionHandle, Message
from local.discord.remote import RemoteActionError, RemoteDriver
from local.discord.rules import ApiError
from local.discord.server import Playground
from local.discord.state import PlaygroundState, Upload, bot_token

__all__ = [
    "ApiError",
    "Driver",
    "InteractionHandle",
    "Message",
    "Playground",
    "PlaygroundState",
    "RemoteActionError",
    "RemoteDriver",
    "Upload",
    "bot_token",
    "discord_py_pointed_at",
    "point_discord_py_at",
]
