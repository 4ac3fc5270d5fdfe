"""`/show job_id`: a job's result brought back in the current channel with working buttons, as Midjourney's /show.

Midjourney: "use an image's Job ID to regenerate the Job within Discord" (https://docs.midjourney.com/docs/show-job).
Peel posts the finished grid with U/V/🔄 (a U already taken is blue) or the single image with its tools. The
buttons are the same persistent ones (`peel:<action>:<job>:<index>`, resolved from the ledger when clicked), so
they work here, after a restart and in any channel. Only the job's owner, or a Peel admin, may show it; anyone
else gets the answer a missing job gets, so other users' job ids leak nothing.
"""

import asyncio
import io
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.generation_types import GenerationError
from bot.app.imaging import grid_preview
from bot.core.models import Job, JobKind, UserId
from bot.core.render import lifecycle_line, result_who
from bot.discord_bot import PeelBot
from bot.exts._errors import send_error
from bot.exts._send import fit_message
from bot.exts.imagine import ImagineCog
from bot.exts.imagine._components import grid_view

GRID_MAX_BYTES = 8 * 1024 * 1024


class ShowCog(commands.Cog):
    """`/show`."""

    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        self.prefer = bot.services.prefer
        self.generation = bot.services.generation

    @app_commands.command(name="show", description="Bring one of your jobs back here, with working buttons")
    @app_commands.describe(job_id="The job's id (from /queue, or a result's file name: <job id>-grid.png)")
    async def show(self, interaction: discord.Interaction[Any], job_id: app_commands.Range[str, 1, 64]) -> None:
        """Post a job's result in this channel, or say privately why it cannot be shown."""
        try:  # looked up before answering: a refusal is only for the asker, never a public "thinking…"
            job = await self.prefer.showable(
                job_id,
                UserId(interaction.user.id),
                is_admin=self.bot.is_admin(interaction.user, interaction.guild_id),
            )
            self._check_showable(job)
        except GenerationError as exc:
            await send_error(interaction, exc, where="/show")
            return
        await interaction.response.defer(thinking=True)
        try:
            kwargs = await self._message_of(job, interaction.filesize_limit)
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await send_error(interaction, exc, where="/show")
            return
        file = kwargs.pop("file", None)
        await interaction.edit_original_response(
            attachments=[file] if file else [], **fit_message(kwargs), allowed_mentions=discord.AllowedMentions.none()
        )

    @staticmethod
    def _check_showable(job: Job) -> None:
        """Refuse a job with nothing to show: a batch (its thread holds it), or one not finished or made nothing."""
        if job.kind is JobKind.BATCH:
            raise GenerationError(
                f"`{job.id}` is a batch: its images are in its thread (`/group download` gets them all).",
                title="Can't show a batch",
            )
        if not job.status.is_final:
            raise GenerationError(
                f"`{job.id}` is still {job.status.value}: its message shows it where it was asked.", title="Not yet"
            )
        if job.ok == 0:
            raise GenerationError(f"`{job.id}` made no images ({job.status.value}).", title="Nothing to show")

    async def _message_of(self, job: Job, upload_limit: int) -> dict[str, Any]:
        """Return the job's result message: its single image with the tools, or its grid with U/V/🔄."""
        display = await self.generation.display_of(job)
        label = await self.generation.label_of(job)
        content = lifecycle_line(display, result_who(label, f"<@{job.owner_id}>"), "fast")
        images = await self.generation.images(job.id)
        if job.total == 1 and images:
            cog = self.bot.get_cog("ImagineCog")
            assert isinstance(cog, ImagineCog)
            return await cog.messages.single_message(images[0], content, upload_limit)
        by_index = {im.index: im for im in images}
        datas = [await self.generation.image_bytes(by_index[i]) if i in by_index else None for i in range(job.total)]
        grid = await asyncio.to_thread(
            grid_preview, datas, max_bytes=min(upload_limit, GRID_MAX_BYTES), stem=f"{job.id}-grid"
        )
        separated = {im.index for im in images if im.message_id is not None}
        return {
            "content": content,
            "file": discord.File(io.BytesIO(grid.data), grid.filename),
            "view": grid_view(job.id, [i in by_index for i in range(job.total)], separated=separated),
        }


async def setup(bot: commands.Bot) -> None:
    """Load the extension."""
    assert isinstance(bot, PeelBot)
    await bot.add_cog(ShowCog(bot))
