"""Replies and reactions on Peel's messages: a reply to an image edits it; ❌ cancels or deletes, ✉️ DMs.

A listener of its own, beside `ImagineCog`'s commands and buttons; both share the `JobTracker` that keeps a job's
message in step, so a reply edit is followed like any other job.
"""

import contextlib
import io
import logging

import discord
from discord.ext import commands

from bot.core.admission import REFUSAL_TITLE
from bot.core.models import Image, Job, UserId
from bot.core.render import echo
from bot.discord_bot import PeelBot
from bot.exts._access import actor_of, refusal_text
from bot.exts._errors import describe_error, error_embed
from bot.exts._send import fit_content
from bot.exts.imagine._inputs import origin_of, read_attachments
from bot.exts.imagine._tracker import STATUS, JobTracker, Tracked

log = logging.getLogger(__name__)

CANCEL, ENVELOPE = "❌", "✉️"


class ReplyEditCog(commands.Cog):
    """Reply edits and reactions on Peel's images and jobs."""

    def __init__(self, bot: PeelBot, tracker: JobTracker) -> None:
        self.bot = bot
        self.service = bot.services.generation
        self.account = bot.services.account
        self.tracker = tracker

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """A reply to a Peel image is an edit of that image: the next turn of its chain."""
        ref = message.reference
        if message.author.bot or ref is None or ref.message_id is None or not message.content.strip():
            return
        shown = await self.service.shown_in(ref.message_id)
        if shown is None:
            return
        if len(shown.images) != 1:
            await _reply(message, "Reply to a single image to edit it: press U1–U4 first, then reply to that.")
            return
        image = shown.images[0]
        refusal = refusal_text(self.bot.access, message.author, message.guild.id if message.guild else None)
        if refusal is not None:
            await _reply(message, refusal)
            return
        try:
            origin = await origin_of(
                self.bot,
                message.author,
                message.channel,
                message.guild.id if message.guild else None,
                key=f"m:{message.id}",
            )
            files = await read_attachments(list(message.attachments))
            refs = await self.service.take_references(files)
            names = [name for name, _data in files]
            submitted = await self.service.submit(
                await self.service.edit(image, origin, instruction=message.content, ref_keys=refs, ref_names=names)
            )
        except Exception as exc:  # the Discord boundary  # noqa: BLE001
            embed = _describe(exc)
            with contextlib.suppress(discord.HTTPException):
                await message.reply(embed=embed, mention_author=False)
            return
        result = submitted.result
        if result.job is None:
            with contextlib.suppress(discord.HTTPException):
                await message.reply(embed=error_embed(REFUSAL_TITLE, result.message), mention_author=False)
            return
        t = Tracked(
            job_id=result.job.id,
            channel_id=message.channel.id,
            message_id=None,
            owner_id=message.author.id,
            display=submitted.prepared.display,
            label="Edited",
            notes=self.service.message_lines(submitted.prepared),
            interaction=None,
            token_at=0.0,
            upload_limit=message.guild.filesize_limit if message.guild else 10 * 1024 * 1024,
            position=result.position,
        )
        status = await message.reply(
            t.line(self.tracker.state_of(t)), mention_author=False, allowed_mentions=discord.AllowedMentions.none()
        )
        t.message_id = status.id
        t.pacer.edited(self.tracker.now())
        await self.account.record_message(result.job.id, STATUS, channel_id=t.channel_id, message_id=status.id)
        await self.tracker.track(t)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """❌ cancels a running job or deletes your finished result; ✉️ DMs you the full image."""
        emoji = str(payload.emoji)
        if self.bot.user is None or payload.user_id == self.bot.user.id:
            return
        if emoji not in (CANCEL, ENVELOPE):
            return
        shown = await self.service.shown_in(payload.message_id)
        if shown is None:
            return
        job, images = shown.job, shown.images
        user = payload.member or await self.bot.fetch_user(payload.user_id)
        # A reaction cannot be answered ephemerally: one on someone else's job is ignored.
        if not self.bot.access.may_manage(actor_of(user, payload.guild_id), job.owner_id):
            return
        is_admin = self.bot.is_admin(user, payload.guild_id)
        try:
            if emoji == ENVELOPE:
                await self._dm(user, job, images)
            elif not job.status.is_final:
                await self.account.cancel(job.id, UserId(payload.user_id), is_admin=is_admin)
            else:
                channel = self.bot.get_partial_messageable(payload.channel_id)
                await channel.get_partial_message(payload.message_id).delete()
                await self.service.mark_deleted(shown)  # once Discord took it down: the group ZIP leaves it out
        except discord.HTTPException:
            log.warning("reaction %s on %s could not be handled", emoji, payload.message_id, exc_info=True)

    async def _dm(self, user: discord.User | discord.Member, job: Job, images: list[Image]) -> None:
        files, lines = (
            [],
            [f"**{echo(await self.service.display_of(job))}**", f"Job `{job.id}` · model {job.params.model}"],
        )
        for image in images[:10]:
            item = await self.service.item(job.id, image.index)
            seed = item.seed if item is not None else "?"
            # Stable: a DM stays, and ten ~1,000-character presigned URLs would not fit a message's 2,000.
            link = await self.bot.runtime.lasting_link(image.key, filename=f"{job.id}-{image.index + 1}.png")
            lines.append(f"Image #{image.index + 1} · seed {seed} · [full size]({link})")
            data = await self.service.image_bytes(image)
            if len(data) <= 8 * 1024 * 1024:
                files.append(discord.File(io.BytesIO(data), f"{job.id}-{image.index + 1}.png"))
        await user.send(fit_content("\n".join(lines)), files=files, allowed_mentions=discord.AllowedMentions.none())

    # ---- helpers -----------------------------------------------------------------------------------------------


def _describe(exc: BaseException) -> discord.Embed:
    return describe_error(exc, where="reply edit")


async def _reply(message: discord.Message, text: str) -> None:
    with contextlib.suppress(discord.HTTPException):
        await message.reply(text, mention_author=False)


__all__ = ["ReplyEditCog"]
