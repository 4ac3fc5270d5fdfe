"""What a job's message becomes: tracked while it runs, then its grid, its single image or why it failed.

`JobMessages` owns the `JobTracker` that keeps each job's message in step with the dispatcher, and posts the end of
the story: the grid with U/V/🔄, one image with its tools (a finished single-image job, or U#), or the failure.
"""

import asyncio
import contextlib
import io
import logging
from typing import Any

import discord

from bot.app.generation_types import safety_reason
from bot.app.imaging import fit_for_upload, grid_preview
from bot.core.item_errors import BLOCKED_COST, NOT_MADE_COST
from bot.core.models import Image, Job, JobId
from bot.core.render import CustomId, blocked_title, full_size_link, image_line, with_full_size_line
from bot.discord_bot import PeelBot
from bot.exts._errors import error_embed
from bot.exts._send import fit_content, fit_embed, fit_message, fit_view
from bot.exts.imagine._components import clicked_button, grid_view, tools_view, used_view
from bot.exts.imagine._tracker import RESULT, JobTracker, Tracked

log = logging.getLogger(__name__)


class JobMessages:
    """Tracks jobs' messages and shows how each job ended."""

    def __init__(
        self,
        bot: PeelBot,
        *,
        interval_s: float,
        token_max_age_s: float,
        channel_edit_window_s: float = 5.0,
        expected_s: float = 12.0,
    ) -> None:
        self._bot = bot
        self._service = bot.services.generation
        self._account = bot.services.account
        self.tracker = JobTracker(
            bot,
            finish=self.finish,
            fail=self.fail,
            interval_s=interval_s,
            token_max_age_s=token_max_age_s,
            channel_edit_window_s=channel_edit_window_s,
            expected_s=expected_s,
        )

    async def finish(self, t: Tracked, job: Job) -> None:
        """Show a finished job: the grid with U/V/🔄, or a single image with its tools."""
        images = await self._service.images(job.id)
        if job.total == 1 and images:
            image = images[0]
            kwargs = await self.single_message(image, t.line("fast"), t.upload_limit)
        else:
            by_index = {im.index: im for im in images}
            datas = [await self._service.image_bytes(by_index[i]) if i in by_index else None for i in range(job.total)]
            grid = await asyncio.to_thread(
                grid_preview, datas, max_bytes=min(t.upload_limit, 8 * 1024 * 1024), stem=f"{job.id}-grid"
            )
            kwargs = {
                "content": t.line("fast"),
                "file": discord.File(io.BytesIO(grid.data), grid.filename),
                "view": grid_view(job.id, [i in by_index for i in range(job.total)]),
            }
        message = await self._post(t, kwargs)
        if message is None:
            return
        await self._account.record_message(job.id, RESULT, channel_id=t.channel_id, message_id=message.id)
        if job.total == 1 and images:
            await self._service.record_image_message(images[0], message.id)

    async def _post(self, t: Tracked, kwargs: dict[str, Any]) -> discord.Message | discord.InteractionMessage | None:
        """Put a result on the job's message (fresh token, or a channel-born message), else on a new one."""
        if self.tracker.token_fresh(t) or (t.interaction is None and not t.post_new):
            file = kwargs.pop("file", None)
            return await self.tracker.edit(t, attachments=[file] if file else [], **kwargs)
        channel = self._bot.get_partial_messageable(t.channel_id)
        message = await channel.send(**fit_message(kwargs), allowed_mentions=t.pings)
        if t.message_id is not None:
            with contextlib.suppress(discord.HTTPException):
                await channel.get_partial_message(t.message_id).edit(
                    content=fit_content(t.line("done · the result is below")),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
        return message

    async def fail(self, t: Tracked, job: Job, reason: str) -> None:
        """Show why a job failed: Gemini's safety reason when it was blocked (and what a block costs)."""
        items = await self._service.items(job.id)
        blocked = safety_reason([(i.status, i.error_code, i.error_message) for i in items])
        if blocked is not None:
            embed = error_embed(blocked_title(blocked), f"Rephrase the prompt and try again. {BLOCKED_COST}")
        else:
            embed = error_embed("Job failed", f"{reason} {NOT_MADE_COST}")
        if self.tracker.token_fresh(t):
            assert t.interaction is not None
            with contextlib.suppress(discord.HTTPException):
                await t.interaction.delete_original_response()
            await t.interaction.followup.send(embed=fit_embed(embed), ephemeral=True)
            return
        await self.tracker.edit(t, content=t.line("failed"), embed=embed, view=None)

    async def separate(self, interaction: discord.Interaction[Any], job_id: JobId, index: int) -> None:
        """U#: post one image of a grid at full size with its tools (no model call)."""
        image = await self._service.image(job_id, index)
        job = await self._service.job(job_id)
        line = image_line(await self._service.display_of(job), index + 1, interaction.user.mention)
        kwargs = await self.single_message(image, line, interaction.filesize_limit)
        file = kwargs.pop("file", None)
        message = await interaction.edit_original_response(
            attachments=[file] if file else [], **fit_message(kwargs), allowed_mentions=discord.AllowedMentions.none()
        )
        await self._service.record_image_message(image, message.id)
        if interaction.message is not None and job.total > 1:
            await self._mark_separated(interaction.message, job)

    async def _mark_separated(self, grid: discord.Message, job: Job) -> None:
        """Turn the U of every image of the grid separated so far blue; the grid itself is left as it is."""
        images = await self._service.images(job.id)
        separated = {CustomId(action="u", job_id=job.id, index=im.index).encode() for im in images if im.message_id}
        await self.mark_used(grid, separated)

    async def mark_used(self, message: discord.Message, used: set[str]) -> None:
        """Turn the buttons in `used` (custom ids) of a message blue, keeping every other button as it is."""
        view = used_view(message, used)
        if view is None:
            return
        try:
            await message.edit(view=fit_view(view))
        except discord.HTTPException as exc:  # the job runs; an old or deleted message just stays grey
            log.info("buttons of %s not marked: %s", message.id, exc)

    async def mark_clicked(self, interaction: discord.Interaction[Any]) -> None:
        """Turn the button that started this interaction's job blue (V, 🔄, a tool; through its modal too)."""
        clicked = clicked_button(interaction)
        if clicked is not None and interaction.message is not None:
            await self.mark_used(interaction.message, {clicked})

    async def single_message(self, image: Image, content: str, upload_limit: int) -> dict[str, Any]:
        data = await self._service.image_bytes(image)
        stem = f"{image.job_id}-{image.index + 1}"
        # A stable link of Peel's web server: short, and it keeps opening the image after a store URL would expire.
        link = await self._bot.runtime.lasting_link(image.key, filename=f"{stem}.png")
        button_link = full_size_link(link)
        kwargs: dict[str, Any] = {
            "content": content,
            "view": tools_view(
                image.job_id,
                image.index,
                link=button_link,
                favourite=image.is_favourite,
                square=image.width is None or image.width == image.height,
            ),
        }
        if len(data) <= upload_limit:
            fitted = await asyncio.to_thread(fit_for_upload, data, max_bytes=upload_limit, stem=stem)
            kwargs["file"] = discord.File(io.BytesIO(fitted.data), fitted.filename)
        else:
            kwargs["content"] = f"{content}\nThe full image is larger than this server's upload limit: use Full size."
        # Too long for a link button (Discord would refuse the whole message): only a presigned store URL, when
        # users cannot reach the web server, or a very long PUBLIC_BASE_URL.
        if button_link is None:
            kwargs["content"] = with_full_size_line(kwargs["content"], link)
        return kwargs


__all__ = ["JobMessages"]
