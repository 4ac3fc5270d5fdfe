"""One mapper from errors to what a Discord user sees: short, ephemeral, and saying what to do.

Errors that carry a `user_message` (`UserFacingError`, the dispatcher's `InvalidRequestError`, intake and fetch
errors) are shown as they are; anything else gets a generic message with a short incident id that is logged with
the traceback, so an operator can find it.
"""

import logging
import secrets

import discord

from bot.exts._send import fit_embed

log = logging.getLogger(__name__)

ERROR_COLOUR = discord.Colour(0xED4245)
WARNING_COLOUR = discord.Colour(0xFEE75C)


def user_message_of(exc: BaseException) -> str | None:
    """Return the message meant for the user that an error carries, if any."""
    message = getattr(exc, "user_message", None)
    return message if isinstance(message, str) and message else None


def error_embed(title: str, description: str, *, warning: bool = False) -> discord.Embed:
    """Return the embed Peel shows for an error (red) or a warning (yellow), cut to Discord's embed limits."""
    colour = WARNING_COLOUR if warning else ERROR_COLOUR
    return fit_embed(discord.Embed(title=title, description=description, colour=colour))


def new_incident_id() -> str:
    """Return a short id to quote in a generic error and find in the log."""
    return secrets.token_hex(4)


def describe_error(exc: BaseException, *, where: str) -> discord.Embed:
    """Turn an error into the embed the user sees, logging unexpected ones with an incident id."""
    original = exc
    while isinstance(original, discord.app_commands.AppCommandError | discord.DiscordException) and original.__cause__:
        original = original.__cause__
    message = user_message_of(original)
    if message is not None:
        title = getattr(original, "title", None)  # UserFacingError and the services' errors name their kind
        title = title if isinstance(title, str) and title else "Can't do that"
        return error_embed(title, message)
    if isinstance(original, discord.app_commands.CheckFailure):
        return error_embed("Not allowed", str(original) or "You can't use that here.")
    incident = new_incident_id()
    log.error("unexpected error in %s (incident %s)", where, incident, exc_info=original, extra={"incident": incident})
    return error_embed(
        "Something went wrong",
        f"Peel hit an unexpected error. Try again in a moment; if it keeps happening, tell an admin "
        f"the incident id `{incident}`.",
    )


async def send_error(interaction: discord.Interaction, exc: BaseException, *, where: str) -> None:
    """Answer an interaction with the error, ephemerally, whether or not it was already acknowledged."""
    embed = describe_error(exc, where=where)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(embed=fit_embed(embed), ephemeral=True)
        else:
            await interaction.response.send_message(embed=fit_embed(embed), ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell the user about an error in %s", where, exc_info=True)
