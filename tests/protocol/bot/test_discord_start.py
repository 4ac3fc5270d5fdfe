"""Starting on Discord: a refused token or an unreachable Discord is one operator message, never a traceback."""

import discord
import pytest

from bot.discord_bot import DiscordStartError, explain_connection_end, log_in, peel_intents
from local.discord import Playground
from local.discord.discord_py import discord_py_pointed_at


async def test_a_refused_token_is_a_configuration_error_naming_discord_token() -> None:
    async with Playground(port=0) as pg:
        client = discord.Client(intents=peel_intents())
        with pg.discord_py(), pytest.raises(DiscordStartError) as caught:
            try:
                await log_in(client, "not-the-token")
            finally:
                await client.close()
    assert caught.value.misconfigured
    assert "DISCORD_TOKEN" in str(caught.value) and "not-the-token" not in str(caught.value)


async def test_an_unreachable_discord_is_an_outage_the_supervisor_retries(unused_tcp_port: int) -> None:
    closed = f"http://127.0.0.1:{unused_tcp_port}"
    client = discord.Client(intents=peel_intents())
    gateway = f"ws://127.0.0.1:{unused_tcp_port}/gateway"
    with discord_py_pointed_at(f"{closed}/api/v10", gateway), pytest.raises(DiscordStartError) as caught:
        try:
            await log_in(client, "any")
        finally:
            await client.close()
    assert not caught.value.misconfigured
    assert "cannot be reached" in str(caught.value)


async def test_the_login_succeeds_against_the_playground() -> None:
    async with Playground(port=0) as pg:
        client = discord.Client(intents=peel_intents())
        with pg.discord_py():
            try:
                await log_in(client, pg.token)
                assert client.user is not None
            finally:
                await client.close()


def test_a_refused_privileged_intent_names_the_portal_switch() -> None:
    explained = explain_connection_end(discord.PrivilegedIntentsRequired(None))
    assert explained is not None and explained.misconfigured
    assert "Message Content Intent" in str(explained)
    assert explain_connection_end(RuntimeError("other")) is None
