"""A local Discord: REST API v10 and gateway for a real discord.py bot, a browser page, and a test driver.

Typical use::

    async with Playground(port=0) as pg:
        with discord_py_pointed_at(pg.api_base, pg.gateway_url):
            ...  # start the bot with pg.token
        alice = pg.driver("alice")
        await alice.slash("imagine", {"prompt": "a fox"})
"""

from playground.discord_py import discord_py_pointed_at, point_discord_py_at
from playground.driver import Driver, InteractionHandle, Message
from playground.remote import RemoteActionError, RemoteDriver
from playground.rules import ApiError
from playground.server import Playground
from playground.state import DEFAULT_TOKEN, PlaygroundState, Upload

__all__ = [
    "DEFAULT_TOKEN",
    "ApiError",
    "Driver",
    "InteractionHandle",
    "Message",
    "Playground",
    "PlaygroundState",
    "RemoteActionError",
    "RemoteDriver",
    "Upload",
    "discord_py_pointed_at",
    "point_discord_py_at",
]
