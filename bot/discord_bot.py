"""The Discord bot: a `commands.Bot` that loads Peel's extensions, checks access and runs the dispatcher."""

import asyncio
import hashlib
import json
import logging
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.app.runtime import Runtime
from bot.app.services import Services
from bot.exts import EXTENSIONS, _keepalive
from bot.exts._access import AccessPolicy, actor_of, refusal_text
from bot.exts._errors import error_embed, send_error
from bot.exts._send import fit_embed

log = logging.getLogger(__name__)

# Every permission Peel's cogs use in a server, and no other: the invite URL asks for exactly these and
# `python -m bot doctor` names any a server withholds. Messages and their edits (grids, progress, results),
# embeds (errors, plans), files (images, ZIPs), threads (groups, /batch results) and the
# history of a channel (fetching the message a reply or a reaction is on).
PEEL_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,  # the bot adds no reactions: it only reads the ones users add
)
PEEL_SCOPES = ("bot", "applications.commands")


class DiscordStartError(Exception):
    """Discord refused Peel (`misconfigured`: a setting must change) or could not be reached, as Peel started.

    `str()` is the operator's message: what happened and what to do, never a traceback.
    """

    def __init__(self, message: str, *, misconfigured: bool) -> None:
        super().__init__(message)
        self.misconfigured = misconfigured


async def log_in(client: discord.Client, token: str) -> None:
    """Log in with discord.py (GET /users/@me), turning a refusal or an unreachable Discord into `DiscordStartError`.

    Raises:
        DiscordStartError: the token was refused (401), or Discord did not answer (network, DNS, 5xx).
    """
    try:
        await client.login(token)
    except discord.LoginFailure as exc:
        raise DiscordStartError(
            "Discord refused DISCORD_TOKEN (401): reset the bot's token in the Developer Portal (Bot → Reset Token) "
            "and set DISCORD_TOKEN to it",
            misconfigured=True,
        ) from exc
    except discord.HTTPException as exc:  # a 5xx after discord.py's own retries, or another refusal
        raise DiscordStartError(
            f"Discord answered HTTP {exc.status} to the login; try again later (python -m bot doctor checks it)",
            misconfigured=500 > exc.status >= 400,
        ) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise DiscordStartError(
            f"Discord cannot be reached ({type(exc).__name__}): check this machine's network and DNS for "
            "discord.com; the bot exits so that its supervisor (Docker's restart policy, systemd) starts it again",
            misconfigured=False,
        ) from exc


def explain_connection_end(exc: BaseException) -> DiscordStartError | None:
    """Return what to tell the operator when the gateway connection ended with `exc`, or None to let it raise."""
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return DiscordStartError(
            "Discord refused the Message Content intent (close code 4014): enable it in the Developer Portal "
            "(Bot → Privileged Gateway Intents → Message Content Intent); Peel reads replies in threads with it",
            misconfigured=True,
        )
    if isinstance(exc, discord.LoginFailure):
        return DiscordStartError(
            "Discord refused DISCORD_TOKEN on the gateway (close code 4004): reset the token and set DISCORD_TOKEN",
            misconfigured=True,
        )
    return None


def peel_intents() -> discord.Intents:
    """Return the gateway intents Peel asks for: the defaults and the privileged Message Content."""
    intents = discord.Intents.default()
    intents.message_content = True  # replies in threads are edits of the image they answer
    return intents


class PeelTree(app_commands.CommandTree["PeelBot"]):
    """The command tree: every command is refused politely to users outside the allowed guilds and roles."""

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        """Refuse, ephemerally, a user whom the access policy keeps out."""
        bot = interaction.client
        assert isinstance(bot, PeelBot)
        refusal = refusal_text(bot.access, interaction.user, interaction.guild_id)
        if refusal is None:
            return True
        await interaction.response.send_message(embed=fit_embed(error_embed("No access", refusal)), ephemeral=True)
        return False

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        """Show the user what went wrong (the shared mapper), ephemerally."""
        name = interaction.command.qualified_name if interaction.command else "a command"
        await send_error(interaction, error, where=f"/{name}")


class PeelBot(commands.Bot):
    """Peel on Discord (or on the local playground): the runtime's services behind slash commands and buttons.

    Args:
        runtime: the opened back ends, ledger and dispatcher.
        access: who may use Peel and who is an admin.
        sync_guild_id: sync commands to this guild only (fast in development); None syncs globally.
        run_dispatcher: run the dispatcher loop in this process (tests may drive it themselves).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        access: AccessPolicy,
        sync_guild_id: int | None = None,
        run_dispatcher: bool = True,
    ) -> None:
        # Peel never joins voice: discord.py's "PyNaCl/davey is not installed, voice will NOT be supported" would
        # greet every start for nothing. Client.__init__ logs them only while these VoiceClient flags are set
        # (discord/client.py), so they are cleared here, before it runs; the rest of its logging is untouched.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        # discord.py 2.7.1 can measure a heartbeat ACK against the previous heartbeat and log "Can't keep up,
        # websocket is 41 s behind" with no lag at all; the backport of its upstream fix (until a release has it).
        _keepalive.install()
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=peel_intents(),
            tree_cls=PeelTree,
            help_command=None,
            # Messages echo prompts and names users typed: by default nothing in a message pings anyone.
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.runtime = runtime
        self.services = Services.of(runtime)  # the cogs' only door to the ledger, the dispatcher and the store
        self.access = access
        self._sync_guild_id = sync_guild_id
        self._run_dispatcher = run_dispatcher
        self._dispatcher_task: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        """Load the extensions, sync the commands and start the dispatcher."""
        for name in EXTENSIONS:
            await self.load_extension(name)
        await self._sync_commands()
        if self._run_dispatcher:
            self._dispatcher_task = asyncio.create_task(self.runtime.dispatcher.run_forever(), name="peel-dispatcher")

    async def _sync_commands(self) -> None:
        """Sync the command tree when it changed since the last sync (Discord rate-limits bulk overwrites)."""
        guild = discord.Object(self._sync_guild_id) if self._sync_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [c.to_dict(self.tree) for c in self.tree.get_commands(guild=guild)]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        marker = self.runtime.settings.data_dir / f"commands-{self._sync_guild_id or 'global'}.sha256"
        app_id = str(self.application_id)

        def unchanged() -> bool:
            return marker.exists() and marker.read_text().strip() == f"{app_id}:{digest}"

        if self.runtime.settings.uses_playground or not await asyncio.to_thread(unchanged):
            synced = await self.tree.sync(guild=guild)
            await asyncio.to_thread(marker.write_text, f"{app_id}:{digest}\n")
            log.info("synced %d application command(s)", len(synced))

    async def close(self) -> None:
        """Stop the dispatcher (no new chunks; those in flight are re-attached after a restart), then disconnect."""
        if self._dispatcher_task is not None:
            await self.runtime.dispatcher.stop(self._dispatcher_task)
            self._dispatcher_task = None
        await super().close()

    def gateway_connected(self) -> bool:
        """Tell whether the bot is ready and its gateway websocket is open (readiness: it hears interactions)."""
        # `is_ready` stays true while discord.py reconnects; the websocket's own state says whether it is open now.
        ws: discord.gateway.DiscordWebSocket | None = self.ws  # None until the first connection (typed otherwise)
        return self.is_ready() and not self.is_closed() and ws is not None and ws.open

    def is_admin(self, user: discord.abc.User, guild_id: int | None) -> bool:
        """Tell whether `user` may manage everyone's jobs in `guild_id` (None: in DMs)."""
        return self.access.is_admin(actor_of(user, guild_id))
