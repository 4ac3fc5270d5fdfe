"""Doctor's Discord checks, through discord.py's own HTTP client (the app layer does not import discord).

Token (GET /users/@me), application and its privileged intents (GET /oauth2/applications/@me, its `flags`), the
invite URL with exactly `PEEL_PERMISSIONS`, and the bot's permissions in each allowed server (GET
/users/@me/guilds, whose `permissions` are the bot's in each). No gateway connection is made.
"""

import asyncio
from collections.abc import Iterable, Mapping

import discord
from discord.http import HTTPClient

from bot.app.doctor import Check, failed, passed
from bot.discord_bot import PEEL_PERMISSIONS, PEEL_SCOPES, peel_intents
from bot.settings import BotSettings

GUILDS_CHECKED = 10  # with no ALLOWED_GUILD_IDS, the first servers the bot is in

# Application flags: the privileged intents an application has enabled, as (enabled, enabled-limited) bits
# (https://discord.com/developers/docs/resources/application#application-object-application-flags).
PRIVILEGED_INTENT_FLAGS: Mapping[str, tuple[str, str, str]] = {
    "message_content": ("gateway_message_content", "gateway_message_content_limited", "Message Content Intent"),
    "members": ("gateway_guild_members", "gateway_guild_members_limited", "Server Members Intent"),
    "presences": ("gateway_presence", "gateway_presence_limited", "Presence Intent"),
}
PORTAL = "the Developer Portal (https://discord.com/developers/applications → your app → Bot)"


def invite_url(application_id: int | str) -> str:
    """Return the invite URL with Peel's scopes and exactly its permissions."""
    return discord.utils.oauth_url(application_id, permissions=PEEL_PERMISSIONS, scopes=PEEL_SCOPES)


def missing_permissions(granted: int) -> list[str]:
    """Return the names of Peel's permissions that `granted` (a permission integer) lacks."""
    have = discord.Permissions(granted)
    if have.administrator:
        return []
    return [name for name, wanted in PEEL_PERMISSIONS if wanted and not getattr(have, name)]


def missing_intents(flags: int, intents: discord.Intents) -> list[str]:
    """Return the portal names of the privileged intents Peel asks for that the application has not enabled."""
    app_flags = discord.ApplicationFlags._from_value(flags)
    missing = []
    for intent, (full, limited, label) in PRIVILEGED_INTENT_FLAGS.items():
        if getattr(intents, intent) and not (getattr(app_flags, full) or getattr(app_flags, limited)):
            missing.append(label)
    return missing


async def discord_checks(settings: BotSettings, *, token: str) -> list[Check]:
    """Check the token, the application, its intents and the bot's permissions in the allowed servers."""
    http = HTTPClient(asyncio.get_running_loop())
    try:
        try:
            me = await http.static_login(token)
        except discord.LoginFailure:
            return [
                failed(
                    "Discord token", "Discord refused DISCORD_TOKEN (HTTP 401)", f"copy the bot's token from {PORTAL}"
                )
            ]
        except (discord.HTTPException, OSError) as exc:
            return [failed("Discord token", f"Discord is unreachable: {type(exc).__name__}", "check the network")]
        checks = [passed("Discord token", f"accepted: the bot user is {me['username']} ({me['id']})")]
        app = await http.application_info()
        checks.append(passed("Discord application", f"{app['name']} ({app['id']})"))
        missing = missing_intents(int(app.get("flags", 0) or 0), peel_intents())
        if missing:
            checks.append(
                failed(
                    "privileged intents",
                    f"not enabled: {', '.join(missing)} (replies in threads edit images with it)",
                    f"turn them on in {PORTAL} → Privileged Gateway Intents",
                )
            )
        else:
            checks.append(passed("privileged intents", "Message Content is enabled"))
        url = invite_url(app["id"])
        checks.append(passed("invite URL", url))
        guilds = await http.get_guilds(200, with_counts=False)
        checks += guild_checks(guilds, settings.allowed_guild_ids, url)
        return checks
    finally:
        await http.close()


def guild_checks(guilds: Iterable[Mapping[str, object]], allowed: list[int], url: str) -> list[Check]:
    """Judge the bot's permissions in each allowed server (or the first it is in), from GET /users/@me/guilds."""
    by_id = {int(str(g["id"])): g for g in guilds}
    wanted = allowed or sorted(by_id)[:GUILDS_CHECKED]
    if not wanted:
        return [failed("servers", "the bot is in no server yet", f"invite it with the invite URL: {url}")]
    checks = []
    for guild_id in wanted:
        guild = by_id.get(guild_id)
        if guild is None:
            checks.append(
                failed(f"server {guild_id}", "in ALLOWED_GUILD_IDS but the bot is not in it", f"invite it: {url}")
            )
            continue
        name = f"server {guild.get('name')} ({guild_id})"
        lacking = missing_permissions(int(str(guild.get("permissions", "0"))))
        if lacking:
            checks.append(
                failed(
                    name,
                    f"the bot lacks {', '.join(lacking)}",
                    "give the bot's role these permissions (Server Settings → Roles), or re-invite it with the URL",
                )
            )
        else:
            checks.append(passed(name, "the bot has every permission Peel uses"))
    return checks


__all__ = ["discord_checks", "guild_checks", "invite_url", "missing_intents", "missing_permissions"]
