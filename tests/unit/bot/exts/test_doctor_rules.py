"""Doctor's Discord rules: the invite asks for exactly Peel's permissions; what a server or the app lacks is named."""

from urllib.parse import parse_qs, urlsplit

import discord

from bot.discord_bot import PEEL_PERMISSIONS, peel_intents
from bot.exts._doctor import guild_checks, invite_url, missing_intents, missing_permissions

MESSAGE_CONTENT = 1 << 18
MESSAGE_CONTENT_LIMITED = 1 << 19
MEMBERS = 1 << 14


def test_the_invite_asks_for_exactly_peel_s_permissions_and_scopes() -> None:
    query = parse_qs(urlsplit(invite_url(123)).query)
    assert query["permissions"] == [str(PEEL_PERMISSIONS.value)]
    assert query["scope"] == ["bot applications.commands"]
    assert not PEEL_PERMISSIONS.administrator and not PEEL_PERMISSIONS.manage_messages


def test_missing_permissions_are_named_and_administrator_covers_all() -> None:
    lacking = PEEL_PERMISSIONS.value & ~discord.Permissions(attach_files=True, embed_links=True).value
    assert missing_permissions(lacking) == ["embed_links", "attach_files"]
    assert missing_permissions(PEEL_PERMISSIONS.value) == []
    assert missing_permissions(discord.Permissions(administrator=True).value) == []


def test_message_content_must_be_enabled_in_either_form() -> None:
    assert missing_intents(0, peel_intents()) == ["Message Content Intent"]
    assert missing_intents(MEMBERS, peel_intents()) == ["Message Content Intent"]
    assert missing_intents(MESSAGE_CONTENT, peel_intents()) == []
    assert missing_intents(MESSAGE_CONTENT_LIMITED, peel_intents()) == []


def test_an_allowed_server_the_bot_is_not_in_fails_with_the_invite() -> None:
    guilds = [{"id": "1", "name": "one", "permissions": str(PEEL_PERMISSIONS.value)}]
    checks = guild_checks(guilds, [1, 2], "https://invite")
    assert [(c.name, c.ok) for c in checks] == [("server one (1)", True), ("server 2", False)]
    assert "https://invite" in checks[1].fix


def test_a_server_where_the_bot_lacks_a_permission_fails_naming_it() -> None:
    guilds = [{"id": "1", "name": "one", "permissions": str(discord.Permissions(send_messages=True).value)}]
    [check] = guild_checks(guilds, [], "https://invite")
    assert not check.ok and "create_public_threads" in check.detail


def test_a_bot_in_no_server_fails() -> None:
    [check] = guild_checks([], [], "https://invite")
    assert not check.ok and "no server" in check.detail
