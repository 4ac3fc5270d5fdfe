"""`/imagine`, the grid and its buttons, single-image tools, Remix, reply edits and reactions.

A command is defer → `GenerationService` → render. One message shows a job from "Waiting to start" to its
result (`JobTracker`); buttons are persistent `DynamicItem`s (`_components`), resolved from the ledger.
"""

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.admission import REFUSAL_TITLE
from bot.core.models import GroupId, Image, Job, JobId, JobKind, JobStatus, UserId
from bot.core.render import code, echo, image_line
from bot.discord_bot import PeelBot
from bot.dispatcher import SubmitStatus
from bot.exts._access import actor_of, check_owner, refusal_text
from bot.exts._errors import error_embed, send_error
from bot.exts.imagine._components import (
    EDIT_MODAL,
    REMIX_MODAL,
    EditModal,
    PeelButton,
    PromptModal,
    grid_view,
    modal_values,
    tools_view,
)
from bot.exts.imagine._tracker import RESULT, STATUS, JobTracker, Tracked
from bot.generation import GenerationError, GenerationService, Origin, Prepared, Submitted, safety_reason
from bot.imaging import Direction, fit_for_upload, grid_preview
from bot.ledger import Ledger

log = logging.getLogger(__name__)

MODEL_CHOICES = [
    app_commands.Choice(name="Nano Banana (gemini-2.5-flash-image)", value="flash"),
    app_commands.Choice(name="Nano Banana Pro (gemini-3-pro-image-preview)", value="pro"),
    app_commands.Choice(name="Nano Banana 2 (gemini-3.1-flash-image-preview)", value="flash3"),
]
RATIO_CHOICES = [
    app_commands.Choice(name=r, value=r)
    for r in ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
]
SIZE_CHOICES = [app_commands.Choice(name=s, value=s) for s in ("1K", "2K", "4K")]
PANS = {"pl": Direction.LEFT, "pr": Direction.RIGHT, "pu": Direction.UP, "pd": Direction.DOWN}
ZOOMS = {"z15": 1.5, "z2": 2.0}
CANCEL, ENVELOPE = "❌", "✉️"

Maker = Callable[[Origin], Awaitable[Prepared]]


class ImagineCog(commands.Cog):
    """Interactive generation, Midjourney style."""

    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        rt = bot.runtime
        self.service = GenerationService(
            rt.ledger, rt.dispatcher, rt.backends.store, default_model=rt.settings.gemini_model
        )
        self.tracker = JobTracker(
            bot,
            finish=self._finish,
            fail=self._fail,
            interval_s=rt.settings.progress_edit_interval_s,
            token_max_age_s=rt.settings.interaction_token_max_age_s,
            channel_edit_window_s=rt.settings.channel_edit_window_s,
        )
        self._events: asyncio.Task[None] | None = None

    @property
    def ledger(self) -> Ledger:
        """The runtime's ledger."""
        return self.bot.runtime.ledger

    async def cog_load(self) -> None:
        """Listen to the dispatcher and adopt the unfinished jobs a previous run left."""
        subscription = self.bot.runtime.dispatcher.subscribe()

        async def consume() -> None:
            async for event in subscription:
                try:
                    await self.tracker.handle(event)
                except Exception:  # one event must not stop the listener
                    log.exception("handling %s failed", type(event).__name__)

        self._events = asyncio.create_task(consume(), name="peel-imagine-events")
        self._subscription = subscription
        self.tracker.start()
        for job in await self.ledger.unfinished_jobs():
            if job.kind is JobKind.BATCH:
                continue
            where = await self.ledger.job_message(job.id, STATUS)
            if where is None:
                continue
            await self.tracker.track(
                Tracked(
                    job_id=job.id,
                    channel_id=where[0],
                    message_id=where[1],
                    owner_id=job.owner_id,
                    display=await self.service.display_of(job),
                    label=await self.service.label_of(job),
                    interaction=None,
                    token_at=0.0,
                    post_new=True,
                    started_at=self.tracker.now() if job.status is JobStatus.RUNNING else None,
                )
            )

    async def cog_unload(self) -> None:
        """Stop listening."""
        self._subscription.close()
        if self._events is not None:
            self._events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events
        await self.tracker.close()

    # ---- /imagine ----------------------------------------------------------------------------------------------

    @app_commands.command(name="imagine", description="Make images from a prompt (and reference images)")
    @app_commands.describe(
        prompt="What to draw; inline --ar W:H --seed N --no words --model flash|pro --size 1K|2K|4K --n 1|2|4",
        model="The Gemini image model",
        aspect_ratio="The picture's shape",
        size="The output size (2K and 4K on Pro / Nano Banana 2)",
        image="A reference image",
    )
    @app_commands.choices(model=MODEL_CHOICES, aspect_ratio=RATIO_CHOICES, size=SIZE_CHOICES)
    async def imagine(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, 1500],
        model: str | None = None,
        aspect_ratio: str | None = None,
        size: str | None = None,
        image: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        image6: discord.Attachment | None = None,
        image7: discord.Attachment | None = None,
        image8: discord.Attachment | None = None,
        image9: discord.Attachment | None = None,
        image10: discord.Attachment | None = None,
    ) -> None:
        """Make a grid."""
        await interaction.response.defer(thinking=True)
        attachments = [a for a in (image, image2, image3, image4, image5, image6, image7, image8, image9, image10) if a]

        async def make(origin: Origin) -> Prepared:
            refs = await self.service.take_references(await _read_all(attachments))
            return await self.service.imagine(
                prompt, origin, ref_keys=refs, model=model, aspect_ratio=aspect_ratio, image_size=size
            )

        await self._launch(interaction, make, where="/imagine")

    # ---- buttons and modals ------------------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction[Any], action: str, job_id: JobId, index: int) -> None:
        """Run a grid or single-image button."""
        if await self._refused(interaction):
            return
        try:
            if action == "ed":
                await self._image(job_id, index)
                await interaction.response.send_modal(EditModal(job_id=job_id, index=index))
                return
            if action in ("v", "vs", "vx", "r"):
                prefs = await self.service.preferences(UserId(interaction.user.id))
                if prefs.remix:
                    job = await self._job(job_id)
                    title = "Remix: re-roll" if action == "r" else "Remix: vary"
                    text = await self.service.remix_text(job)
                    await interaction.response.send_modal(
                        PromptModal(title=title, action=action, job_id=job_id, index=index, text=text)
                    )
                    return
            if action == "fav":
                await self._favourite(interaction, job_id, index)
                return
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await send_error(interaction, exc, where=f"button {action}")
            return
        await interaction.response.defer(thinking=True)
        if action == "u":
            await self._guarded(interaction, self._separate(interaction, job_id, index), where="U")
            return
        await self._launch(interaction, self._maker(interaction, action, job_id, index, None), where=f"button {action}")

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Run a submitted Remix or Edit modal from its custom id and values, whenever it was opened.

        Every modal submission comes here (discord.py dispatches each interaction to listeners), so one opened
        before a restart works as well as a fresh one; the modals' own `on_submit` does nothing.
        """
        if interaction.type is not discord.InteractionType.modal_submit or not isinstance(interaction.data, dict):
            return
        custom_id = str(interaction.data.get("custom_id", ""))
        remix, edit = REMIX_MODAL.fullmatch(custom_id), EDIT_MODAL.fullmatch(custom_id)
        if remix is None and edit is None:
            return
        if await self._refused(interaction):
            return
        values = modal_values(interaction.data)
        if remix is not None:
            job_id, index = JobId(remix["job"]), int(remix["index"])
            prompt = values.get("prompt", "").strip() or None  # an emptied box keeps the job's own prompt
            await self.on_remix(interaction, remix["action"], job_id, index, prompt)
        elif edit is not None:
            job_id, index = JobId(edit["job"]), int(edit["index"])
            await self.on_edit(interaction, job_id, index, values.get("instruction", "").strip())

    async def on_remix(
        self, interaction: discord.Interaction[Any], action: str, job_id: JobId, index: int, prompt: str | None
    ) -> None:
        """Run V, Vary or 🔄 with the prompt from the Remix modal."""
        await interaction.response.defer(thinking=True)
        await self._launch(interaction, self._maker(interaction, action, job_id, index, prompt), where="remix")

    async def on_edit(self, interaction: discord.Interaction[Any], job_id: JobId, index: int, instruction: str) -> None:
        """Run an edit from the Edit modal."""
        await interaction.response.defer(thinking=True)

        async def make(origin: Origin) -> Prepared:
            return await self.service.edit(await self._image(job_id, index), origin, instruction=instruction)

        await self._launch(interaction, make, where="edit")

    def _maker(
        self, interaction: discord.Interaction[Any], action: str, job_id: JobId, index: int, prompt: str | None
    ) -> Maker:
        async def make(origin: Origin) -> Prepared:
            s = self.service
            if action == "r":
                return await s.reroll(await self._job(job_id), origin, prompt=prompt)
            image = await self._image(job_id, index)
            if action in ("v", "vs", "vx"):
                strength = {"vs": "subtle", "vx": "strong"}.get(action)
                if strength is None:
                    strength = (await s.preferences(origin.user_id)).variation
                return await s.vary(image, origin, strength=strength, prompt=prompt)
            if action in ("up2", "up4"):
                return await s.upscale(image, origin, size="2K" if action == "up2" else "4K")
            if action in ZOOMS:
                return await s.zoom(image, origin, factor=ZOOMS[action])
            if action in PANS:
                return await s.pan(image, origin, direction=PANS[action])
            raise GenerationError(f"Peel doesn't know the button {action!r}.")

        return make

    async def _favourite(self, interaction: discord.Interaction[Any], job_id: JobId, index: int) -> None:
        image = await self._image(job_id, index)
        check_owner(self.bot.access, interaction.user, interaction.guild_id, image.owner_id, "image")
        updated = await self.ledger.set_favourite(image.id, is_favourite=not image.is_favourite)
        added = updated is not None and updated.is_favourite
        text = "❤️ Added to your favourites." if added else "Removed from your favourites."
        await interaction.response.send_message(text, ephemeral=True)

    # ---- the lifecycle -----------------------------------------------------------------------------------------

    async def _launch(self, interaction: discord.Interaction[Any], make: Maker, *, where: str) -> None:
        """Build, submit and track a job for a deferred interaction; errors replace the loading message."""
        try:
            origin = await self._origin(
                interaction.user, interaction.channel, interaction.guild_id, key=f"i:{interaction.id}"
            )
            submitted = await self.service.submit(await make(origin))
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await self._fail_interaction(interaction, exc, where=where)
            return
        result = submitted.result
        if result.status is SubmitStatus.REFUSED or result.job is None:
            await self._fail_interaction(interaction, GenerationError(result.message, title=REFUSAL_TITLE), where=where)
            return
        job = result.job
        t = Tracked(
            job_id=job.id,
            channel_id=interaction.channel_id or 0,
            message_id=None,
            owner_id=job.owner_id,
            display=submitted.prepared.display,
            label=submitted.prepared.label,
            interaction=interaction,
            token_at=self.tracker.now() - (discord.utils.utcnow() - interaction.created_at).total_seconds(),
            upload_limit=interaction.filesize_limit,
            position=result.position,
        )
        try:
            message = await interaction.edit_original_response(
                content=t.line(self.tracker.state_of(t)), allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException:
            log.warning("could not show job %s", job.id, exc_info=True)
            return
        t.message_id = message.id
        t.pacer.edited(self.tracker.now())
        await self.ledger.set_job_message(
            job.id, STATUS, channel_id=t.channel_id, message_id=message.id, now=discord.utils.utcnow()
        )
        await self.tracker.track(t)
        await self._tell(interaction, submitted)

    async def _tell(self, interaction: discord.Interaction[Any], submitted: Submitted) -> None:
        result, notes = submitted.result, list(submitted.prepared.notes)
        embeds: list[discord.Embed] = []
        if result.status is SubmitStatus.WAITING:
            embeds.append(
                error_embed(
                    "Job queued",
                    "You already have the most jobs running at once; this one starts when one of them finishes.",
                    warning=True,
                )
            )
        if notes:
            embeds.append(discord.Embed(description="\n".join(f"ℹ️ {n}" for n in notes)))
        if embeds:
            with contextlib.suppress(discord.HTTPException):
                await interaction.followup.send(embeds=embeds, ephemeral=True)

    async def _fail_interaction(self, interaction: discord.Interaction[Any], exc: BaseException, *, where: str) -> None:
        """Replace the public loading message with an ephemeral error."""
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        await send_error(interaction, exc, where=where)

    async def _guarded(self, interaction: discord.Interaction[Any], flow: Awaitable[None], *, where: str) -> None:
        try:
            await flow
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await self._fail_interaction(interaction, exc, where=where)

    async def _finish(self, t: Tracked, job: Job) -> None:
        """Show a finished job: the grid with U/V/🔄, or a single image with its tools."""
        images = await self.ledger.images(job_id=job.id)
        if job.total == 1 and images:
            image = images[0]
            kwargs = await self._single_message(image, t.line("fast"), t.upload_limit)
        else:
            by_index = {im.index: im for im in images}
            store = self.bot.runtime.backends.store
            datas = [await store.get_bytes(by_index[i].key) if i in by_index else None for i in range(job.total)]
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
        await self.ledger.set_job_message(
            job.id, RESULT, channel_id=t.channel_id, message_id=message.id, now=discord.utils.utcnow()
        )
        if job.total == 1 and images:
            await self.ledger.set_image_message(images[0].id, message.id)

    async def _post(self, t: Tracked, kwargs: dict[str, Any]) -> discord.Message | discord.InteractionMessage | None:
        """Put a result on the job's message (fresh token, or a channel-born message), else on a new one."""
        if self.tracker.token_fresh(t) or (t.interaction is None and not t.post_new):
            file = kwargs.pop("file", None)
            return await self.tracker.edit(t, attachments=[file] if file else [], **kwargs)
        channel = self.bot.get_partial_messageable(t.channel_id)
        message = await channel.send(**kwargs, allowed_mentions=t.pings)
        if t.message_id is not None:
            with contextlib.suppress(discord.HTTPException):
                await channel.get_partial_message(t.message_id).edit(
                    content=t.line("done · the result is below"), allowed_mentions=discord.AllowedMentions.none()
                )
        return message

    async def _fail(self, t: Tracked, job: Job, reason: str) -> None:
        """Show why a job failed: Gemini's safety reason when it was blocked (and that it cost nothing)."""
        items = await self.ledger.items(job.id)
        blocked = safety_reason([(i.status, i.error_code, i.error_message) for i in items])
        if blocked is not None:
            embed = error_embed(
                "Request blocked by safety filters",
                f"{blocked}\nNothing was charged. Rephrase the prompt and try again.",
            )
        else:
            embed = error_embed("Job failed", f"{reason} Nothing was charged for the images that were not made.")
        if self.tracker.token_fresh(t):
            assert t.interaction is not None
            with contextlib.suppress(discord.HTTPException):
                await t.interaction.delete_original_response()
            await t.interaction.followup.send(embed=embed, ephemeral=True)
            return
        await self.tracker.edit(t, content=t.line("failed"), embed=embed, view=None)

    async def _separate(self, interaction: discord.Interaction[Any], job_id: JobId, index: int) -> None:
        """U#: post one image of a grid at full size with its tools (no model call)."""
        image = await self._image(job_id, index)
        job = await self._job(job_id)
        line = image_line(await self.service.display_of(job), index + 1, interaction.user.mention)
        kwargs = await self._single_message(image, line, interaction.filesize_limit)
        file = kwargs.pop("file", None)
        message = await interaction.edit_original_response(
            attachments=[file] if file else [], **kwargs, allowed_mentions=discord.AllowedMentions.none()
        )
        await self.ledger.set_image_message(image.id, message.id)
        if interaction.message is not None and job.total > 1:
            await self._mark_separated(interaction.message, job)

    async def _mark_separated(self, grid: discord.Message, job: Job) -> None:
        """Turn the U of every image of the grid separated so far blue; the grid itself is left as it is."""
        images = await self.ledger.images(job_id=job.id)
        present = {im.index for im in images}
        separated = {im.index for im in images if im.message_id is not None}
        view = grid_view(job.id, [i in present for i in range(job.total)], separated=separated)
        try:
            await grid.edit(view=view)
        except discord.HTTPException as exc:  # the image is posted; an old or deleted grid just stays grey
            log.info("grid %s of %s not marked: %s", grid.id, job.id, exc, extra={"job_id": job.id})

    async def _single_message(self, image: Image, content: str, upload_limit: int) -> dict[str, Any]:
        store = self.bot.runtime.backends.store
        data = await store.get_bytes(image.key)
        stem = f"{image.job_id}-{image.index + 1}"
        link = await self.bot.runtime.link(image.key, filename=f"{stem}.png")
        kwargs: dict[str, Any] = {
            "content": content,
            "view": tools_view(image.job_id, image.index, link=link, favourite=image.is_favourite),
        }
        if len(data) <= upload_limit:
            fitted = await asyncio.to_thread(fit_for_upload, data, max_bytes=upload_limit, stem=stem)
            kwargs["file"] = discord.File(io.BytesIO(fitted.data), fitted.filename)
        else:
            kwargs["content"] = f"{content}\nThe full image is larger than this server's upload limit: use Full size."
        return kwargs

    # ---- replies and reactions ---------------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """A reply to a Peel image is an edit of that image: the next turn of its chain."""
        ref = message.reference
        if message.author.bot or ref is None or ref.message_id is None or not message.content.strip():
            return
        image = await self.ledger.image_of_message(ref.message_id)
        if image is None:
            shown = await self.ledger.job_of_message(ref.message_id)
            if shown is None:
                return
            images = await self.ledger.images(job_id=shown[0])
            if len(images) != 1:
                await _reply(message, "Reply to a single image to edit it: press U1–U4 first, then reply to that.")
                return
            image = images[0]
        refusal = refusal_text(self.bot.access, message.author, message.guild.id if message.guild else None)
        if refusal is not None:
            await _reply(message, refusal)
            return
        try:
            origin = await self._origin(
                message.author, message.channel, message.guild.id if message.guild else None, key=f"m:{message.id}"
            )
            refs = await self.service.take_references(await _read_all(list(message.attachments)))
            submitted = await self.service.submit(
                await self.service.edit(image, origin, instruction=message.content, ref_keys=refs)
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
        await self.ledger.set_job_message(
            result.job.id, STATUS, channel_id=t.channel_id, message_id=status.id, now=discord.utils.utcnow()
        )
        await self.tracker.track(t)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """❌ cancels a running job or deletes your finished result; ✉️ DMs you the full image."""
        emoji = str(payload.emoji)
        if self.bot.user is None or payload.user_id == self.bot.user.id:
            return
        if emoji not in (CANCEL, ENVELOPE):
            return
        images: list[Image]
        image = await self.ledger.image_of_message(payload.message_id)
        shown = await self.ledger.job_of_message(payload.message_id)
        if image is not None:
            job = await self.ledger.get_job(image.job_id)
            images = [image]
        elif shown is not None:
            job = await self.ledger.get_job(shown[0])
            images = await self.ledger.images(job_id=shown[0])
        else:
            return
        if job is None:
            return
        user = payload.member or await self.bot.fetch_user(payload.user_id)
        # A reaction cannot be answered ephemerally: one on someone else's job is ignored.
        if not self.bot.access.may_manage(actor_of(user, payload.guild_id), job.owner_id):
            return
        is_admin = self.bot.is_admin(user, payload.guild_id)
        try:
            if emoji == ENVELOPE:
                await self._dm(user, job, images)
            elif not job.status.is_final:
                await self.bot.runtime.dispatcher.cancel(job.id, UserId(payload.user_id), is_admin=is_admin)
            else:
                channel = self.bot.get_partial_messageable(payload.channel_id)
                await channel.get_partial_message(payload.message_id).delete()
        except discord.HTTPException:
            log.warning("reaction %s on %s could not be handled", emoji, payload.message_id, exc_info=True)

    async def _dm(self, user: discord.User | discord.Member, job: Job, images: list[Image]) -> None:
        store = self.bot.runtime.backends.store
        files, lines = (
            [],
            [f"**{echo(await self.service.display_of(job))}**", f"Job `{job.id}` · model {job.params.model}"],
        )
        for image in images[:10]:
            item = await self.ledger.get_item(job.id, image.index)
            seed = item.seed if item is not None else "?"
            link = await self.bot.runtime.link(image.key, filename=f"{job.id}-{image.index + 1}.png")
            lines.append(f"Image #{image.index + 1} · seed {seed} · [full size]({link})")
            data = await store.get_bytes(image.key)
            if len(data) <= 8 * 1024 * 1024:
                files.append(discord.File(io.BytesIO(data), f"{job.id}-{image.index + 1}.png"))
        await user.send("\n".join(lines), files=files, allowed_mentions=discord.AllowedMentions.none())

    # ---- helpers -----------------------------------------------------------------------------------------------

    async def _refused(self, interaction: discord.Interaction[Any]) -> bool:
        refusal = refusal_text(self.bot.access, interaction.user, interaction.guild_id)
        if refusal is None:
            return False
        await interaction.response.send_message(embed=error_embed("No access", refusal), ephemeral=True)
        return True

    async def _origin(self, user: discord.abc.User, channel: Any, guild_id: int | None, *, key: str) -> Origin:
        now = discord.utils.utcnow()
        if isinstance(channel, discord.Thread):
            group = await self.ledger.ensure_group(
                name=channel.name,
                now=now,
                guild_id=guild_id,
                channel_id=channel.parent_id,
                thread_id=channel.id,
                owner_id=channel.owner_id,
            )
        else:
            name = getattr(channel, "name", None) or "direct messages"
            group = await self.ledger.ensure_group(
                name=f"#{name}", now=now, guild_id=guild_id, channel_id=getattr(channel, "id", None)
            )
        return Origin(
            user_id=UserId(user.id),
            guild_id=guild_id,
            group_id=GroupId(group.id),
            idempotency_key=key,
            is_admin=self.bot.is_admin(user, guild_id),
        )

    async def _job(self, job_id: JobId) -> Job:
        job = await self.ledger.get_job(job_id)
        if job is None:
            raise GenerationError("That job is no longer known to Peel.")
        return job

    async def _image(self, job_id: JobId, index: int) -> Image:
        image = await self.ledger.image_at(job_id, index)
        if image is None:
            raise GenerationError("That image was not made (or is no longer known); try 🔄 instead.")
        return image


def _describe(exc: BaseException) -> discord.Embed:
    from bot.exts._errors import describe_error

    return describe_error(exc, where="reply edit")


async def _reply(message: discord.Message, text: str) -> None:
    with contextlib.suppress(discord.HTTPException):
        await message.reply(text, mention_author=False)


async def _read_all(attachments: list[discord.Attachment]) -> list[tuple[str, bytes]]:
    files = []
    for attachment in attachments:
        if attachment.size > 50 * 1024 * 1024:
            raise GenerationError(f"{code(attachment.filename)} is over 50 MB; attach a smaller image.")
        files.append((attachment.filename, await attachment.read()))
    return files


async def setup(bot: commands.Bot) -> None:
    """Load the extension."""
    assert isinstance(bot, PeelBot)
    bot.add_dynamic_items(PeelButton)
    await bot.add_cog(ImagineCog(bot))


__all__ = ["ImagineCog", "setup"]
