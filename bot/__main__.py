"""Composition root: `python -m bot` runs Peel; with no `DISCORD_TOKEN` it brings up the local playground too.

Everything is built here, once: settings, the runtime (back ends, ledger, dispatcher, link server), the access
policy and the bot. Unset settings select the embedded defaults (docs/architecture.md), so this runs with no
account at all.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bot.exts._access import policy_from_ids
from bot.ledger import LedgerDamagedError, LedgerTooNewError
from bot.malloc import limit_malloc_arenas
from bot.settings import BotSettings, export_storage_env

if TYPE_CHECKING:
    from bot.app.doctor import Check

log = logging.getLogger("bot")

# As `python -m bot batch|imagine` (bot/cli/args.py).
EXIT_LEDGER_DAMAGED = 3  # damaged, or written by a newer Peel
EXIT_UNREACHABLE = 4  # Discord could not be reached at start-up (the supervisor restarts the bot)
EXIT_MISCONFIGURED = 5  # Discord refused the token or the Message Content intent


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse `python -m bot`'s own flags."""
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Run Peel, the Discord image bot.",
        epilog="commands without Discord: batch, imagine, usage, doctor (python -m bot COMMAND --help)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    return parser.parse_args(argv)


async def run(settings: BotSettings) -> None:
    """Run the bot until it is stopped (SIGINT/SIGTERM, e.g. `docker stop`); return within Docker's 10 s grace."""
    from bot.app.probes import discord_check
    from bot.app.runtime import open_runtime
    from bot.discord_bot import PeelBot, log_in

    access = policy_from_ids(
        allowed_guild_ids=settings.allowed_guild_ids,
        allowed_role_ids=settings.allowed_role_ids,
        admin_role_ids=settings.admin_role_ids,
        admin_user_ids=settings.admin_user_ids,
        export_role_ids=settings.export_role_ids,
        guild_admins_are_peel_admins=settings.guild_admins_are_peel_admins,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(open_runtime(settings))
        if settings.uses_playground:
            from local.discord import Playground

            pg = await stack.enter_async_context(
                Playground(
                    host=settings.playground_host,
                    port=settings.playground_port,
                    data_dir=settings.data_dir / "playground",  # the page's history survives a restart
                )
            )
            stack.enter_context(pg.discord_py())
            if not (settings.admin_user_ids or settings.admin_role_ids):
                # The person at the page plays the playground's "admin" (its guild owner): make them a Peel admin, so
                # /budget, /usage and everyone's /queue can be tried without configuring anything. Only here: on
                # Discord nobody is a Peel admin unless ADMIN_USER_IDS or ADMIN_ROLE_IDS say so.
                access = dataclasses.replace(access, admin_user_ids=frozenset({int(pg.state.owner_id)}))
            token = pg.token
            page_url: str | None = pg.url
            sync_guild_id: int | None = int(pg.state.guild_id)
        else:
            assert settings.discord_token is not None
            token = settings.discord_token.get_secret_value()
            page_url = None
            sync_guild_id = settings.dev_guild_id
        bot = PeelBot(runtime, access=access, sync_guild_id=sync_guild_id)
        runtime.readiness.add("discord", discord_check(bot.gateway_connected))
        stack.push_async_callback(bot.close)  # also after a failed login: it closes discord.py's HTTP session
        await log_in(bot, token)
        connection = asyncio.create_task(bot.connect(reconnect=True), name="discord-connection")
        waiter = asyncio.create_task(stop.wait())
        ready = asyncio.create_task(bot.wait_until_ready())
        # A SIGTERM while connecting (a container stopped at once) stops here too.
        await asyncio.wait({ready, connection, waiter}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if connection.done():
            waiter.cancel()
            _reraise_explained(connection)
        if stop.is_set():
            log.info("stopping")
            return
        if page_url is not None:
            sys.stdout.write(
                f"\nPeel is running on the local playground: open {page_url}\n"
                f"(links served from {runtime.signer.base_url}; data in {settings.data_dir}/; Ctrl-C stops)\n\n"
            )
            sys.stdout.flush()
        else:
            log.info("Peel is connected to Discord as %s", bot.user)
        done, _ = await asyncio.wait({connection, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if connection in done:
            _reraise_explained(connection)
        # On the way out (the stack, in reverse): the dispatcher stops submitting and lets chunks in flight be
        # (they are re-attached after a restart), Discord disconnects, the web server closes, the ledger last.
        log.info("stopping")


def _reraise_explained(connection: "asyncio.Task[None]") -> None:
    """Re-raise what ended the gateway connection, as a `DiscordStartError` when the operator must act."""
    from bot.discord_bot import explain_connection_end

    exc = connection.exception()
    if exc is None:
        return
    raise explain_connection_end(exc) or exc


async def doctor_discord_checks(settings: BotSettings) -> "list[Check]":
    """Doctor's Discord checks against Discord, or against the local playground (on a free port) when unset."""
    from bot.exts._doctor import discord_checks

    if settings.uses_playground:
        from local.discord import Playground

        async with Playground(host=settings.playground_host, port=0) as pg:
            with pg.discord_py():
                return await discord_checks(settings, token=pg.token)
    assert settings.discord_token is not None
    return await discord_checks(settings, token=settings.discord_token.get_secret_value())


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bot`; `batch|imagine|usage …` (headless) and `doctor` (preflight): bot/cli/."""
    argv = sys.argv[1:] if argv is None else argv
    limit_malloc_arenas()
    export_storage_env()
    if argv[:1] in (["batch"], ["imagine"], ["usage"]):
        import bot.cli

        return bot.cli.main(argv)
    if argv[:1] == ["doctor"]:
        import bot.cli.doctor

        return bot.cli.doctor.main(argv[1:], discord=doctor_discord_checks)
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("discord").setLevel(logging.WARNING)
    try:
        settings = BotSettings()
    except ValidationError as exc:
        sys.stderr.write(f"Peel: bad settings: {exc.error_count()} problem(s)\n")
        for error in exc.errors():
            sys.stderr.write(f"  {'.'.join(str(p) for p in error['loc']).upper()}: {error['msg']}\n")
        return 2
    if problems := settings.deployment_problems():
        # Before anything starts: a configuration that can never work stops here, not with users left waiting.
        sys.stderr.write(f"Peel: this configuration cannot work: {len(problems)} problem(s)\n")
        for problem in problems:
            sys.stderr.write(f"  {problem}\n")
        return 2
    from bot.discord_bot import DiscordStartError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run(settings))
    except (LedgerDamagedError, LedgerTooNewError) as exc:
        log.critical("%s", exc.user_message)  # what to do, not a traceback: the operator restores the file
        return EXIT_LEDGER_DAMAGED
    except DiscordStartError as exc:
        log.critical("%s", exc)
        return EXIT_MISCONFIGURED if exc.misconfigured else EXIT_UNREACHABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
