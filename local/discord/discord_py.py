"""Point the real discord.py client at a Discord-compatible server (the playground) instead of discord.com.

discord.py reads its REST base (follow-up webhooks included) from ``discord.http.Route.BASE`` and a non-sharded
client connects to ``DiscordWebSocket.DEFAULT_GATEWAY``; both are class attributes, so setting them before
``login`` redirects everything. ``AutoShardedClient`` asks ``GET /gateway/bot``, which the playground serves.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING

import yarl

with warnings.catch_warnings():
    # discord.py 2.7 imports the stdlib's audioop (for voice), deprecated since Python 3.11.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

if TYPE_CHECKING:
    from collections.abc import Iterator


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """Send every discord.py REST call to ``api_base`` and connect its gateway to ``gateway_url``."""
    Route.BASE = api_base.rstrip("/")
    # A class attribute, because discord.py falls back to it again after an INVALID_SESSION.
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url.rstrip("/") + "/")


@contextmanager
def discord_py_pointed_at(api_base: str, gateway_url: str) -> Iterator[None]:
    """Point discord.py at a server for the duration of a ``with`` block, then restore discord.com."""
    old_base, old_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    point_discord_py_at(api_base, gateway_url)
    try:
        yield
    finally:
        Route.BASE = old_base
        DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
