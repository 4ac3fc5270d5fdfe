"""Doctor's Discord checks through discord.py's HTTP client against the local Discord on 127.0.0.1."""

from pathlib import Path

from bot.exts._doctor import discord_checks
from bot.settings import BotSettings
from local.discord import Playground


def settings(tmp_path: Path, allowed_guild_ids: list[int] | None = None) -> BotSettings:
    return BotSettings(  # type: ignore[call-arg]  # pydantic-settings' init kwarg
        _env_file=None, data_dir=tmp_path, allowed_guild_ids=allowed_guild_ids or []
    )


async def test_the_playground_passes_every_discord_check(tmp_path: Path) -> None:
    async with Playground(port=0) as pg:
        with pg.discord_py():
            checks = await discord_checks(settings(tmp_path), token=pg.token)
    assert [c.name for c in checks if not c.ok] == []
    names = [c.name for c in checks]
    assert names[:4] == ["Discord token", "Discord application", "privileged intents", "invite URL"]
    assert names[4] == f"server Peel Playground ({pg.state.guild_id})"


async def test_a_wrong_token_is_refused_by_name(tmp_path: Path) -> None:
    async with Playground(port=0) as pg:
        with pg.discord_py():
            [check] = await discord_checks(settings(tmp_path), token="not-the-token")
    assert not check.ok and check.detail == "Discord refused DISCORD_TOKEN (HTTP 401)"
    assert "not-the-token" not in check.detail + check.fix


async def test_an_allowed_server_the_bot_is_not_in_is_named(tmp_path: Path) -> None:
    async with Playground(port=0) as pg:
        with pg.discord_py():
            checks = await discord_checks(settings(tmp_path, allowed_guild_ids=[42]), token=pg.token)
    [bad] = [c for c in checks if not c.ok]
    assert bad.name == "server 42" and "not in it" in bad.detail
