"""The playground's world: one guild, its channels, threads, users, messages, files, commands and interactions.

Everything is kept as Discord wire JSON, because that is what both the bot (over REST and the gateway) and the
browser page consume. Every change goes through a method of :class:`PlaygroundState`, which emits an
:class:`Event`; the gateway sessions and the browser sockets subscribe to those events, and waiters (the test
driver) wake up on every change.

User actions (a slash command, a click, a modal submit, a reaction, a message) are methods too, so the browser page
and the Python driver produce exactly the same dispatches.

The world is built in layers, one module each: the guild and its events (``local.discord.world``), messages and
reactions (``local.discord.messages``), channels, threads and commands (``local.discord.channels``) and
interactions (``local.discord.interactions``); the records and wire constants they share are in
``local.discord.records`` and re-exported here.
"""

from __future__ import annotations

from local.discord.interactions import InteractionWorld
from local.discord.records import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    AUTOCOMPLETE_RESULT,
    CHANNEL_MESSAGE,
    DEFAULT_UPLOAD_LIMIT,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE,
    DISCORD_EPOCH_MS,
    DM,
    EPHEMERAL,
    EVERYONE_PERMISSIONS,
    GUILD_TEXT,
    LOADING,
    MAX_CHANNEL_NAME,
    MESSAGE_COMPONENT,
    MIB,
    MODAL,
    MODAL_SUBMIT,
    PING,
    PONG,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    THREAD_TYPES,
    UPDATE_MESSAGE,
    Event,
    Interaction,
    Listener,
    Snowflakes,
    StoredFile,
    Upload,
    bot_token,
    now_iso,
)

__all__ = [
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "APPLICATION_COMMAND",
    "AUTOCOMPLETE",
    "AUTOCOMPLETE_RESULT",
    "CHANNEL_MESSAGE",
    "DEFAULT_UPLOAD_LIMIT",
    "DEFERRED_CHANNEL_MESSAGE",
    "DEFERRED_UPDATE",
    "DISCORD_EPOCH_MS",
    "DM",
    "EPHEMERAL",
    "EVERYONE_PERMISSIONS",
    "GUILD_TEXT",
    "LOADING",
    "MAX_CHANNEL_NAME",
    "MESSAGE_COMPONENT",
    "MIB",
    "MODAL",
    "MODAL_SUBMIT",
    "PING",
    "PONG",
    "PRIVATE_THREAD",
    "PUBLIC_THREAD",
    "THREAD_TYPES",
    "UPDATE_MESSAGE",
    "Event",
    "Interaction",
    "Listener",
    "PlaygroundState",
    "Snowflakes",
    "StoredFile",
    "Upload",
    "bot_token",
    "now_iso",
]


class PlaygroundState(InteractionWorld):
    """The in-memory Discord world shared by the REST routes, the gateway, the browser page and the driver."""
