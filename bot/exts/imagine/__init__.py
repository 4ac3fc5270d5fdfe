"""`/imagine`, the grid and its buttons, single-image tools, Remix, reply edits and reactions.

A command is defer → `GenerationService` → render. One message shows a job from "Waiting to start" to its
result (`_results.JobMessages`); buttons are persistent `DynamicItem`s (`_components`), resolved from the ledger.
Reply edits and reactions are a listener of their own (`_replies.ReplyEditCog`), loaded with this cog.
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

from bot.app import SubmitStatus
from bot.app.generation_types import GenerationError, ImaginePlan, Origin, Prepared, Submitted
from bot.app.imaging import Direction
from bot.core.admission import REFUSAL_TITLE
from bot.core.models import Image, Job, JobId, JobKind, JobStatus, UserId
from bot.core.params import GEMINI_ASPECT_RATIOS
from bot.core.regions import RegionError, cells_region
from bot.core.render import many_grids_text
from bot.discord_bot import PeelBot
from bot.exts._access import check_owner, refusal_text
from bot.exts._errors import error_embed, send_error
from bot.exts._send import fit_content, fit_embed, fit_embeds, fit_modal, fit_view
from bot.exts.imagine._components import (
    EDIT_MODAL,
    REGION_MODAL,
    REMIX_MODAL,
    ZOOM_MODAL,
    CellsPromptModal,
    CustomZoomModal,
    EditModal,
    PeelButton,
    PromptModal,
    RegionCellsSelect,
    RegionModal,
    modal_values,
    region_picker_view,
)
from bot.exts.imagine._inputs import origin_of, read_attachments
from bot.exts.imagine._many import ManyGridsView
from bot.exts.imagine._replies import ReplyEditCog
from bot.exts.imagine._results import JobMessages
from bot.exts.imagine._tracker import STATUS, Tracked

log = logging.getLogger(__name__)

MODEL_CHOICES = [
    app_commands.Choice(name="Nano Banana (gemini-2.5-flash-image)", value="flash"),
    app_commands.Choice(name="Nano Banana Pro (gemini-3-pro-image-preview)", value="pro"),
    app_commands.Choice(name="Nano Banana 2 (gemini-3.1-flash-image-preview)", value="flash3"),
]
RATIO_CHOICES = [app_commands.Choice(name=r, value=r) for r in GEMINI_ASPECT_RATIOS]
SIZE_CHOICES = [app_commands.Choice(name=s, value=s) for s in ("1K", "2K", "4K")]
PANS = {"pl": Direction.LEFT, "pr": Direction.RIGHT, "pu": Direction.UP, "pd": Direction.DOWN}
ZOOMS = {"z15": 1.5, "z2": 2.0}

Maker = Callable[[Origin], Awaitable[Prepared]]


class ImagineCog(commands.Cog):
    """Interactive generation, Midjourney style."""

    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        rt = bot.runtime
        self.service = bot.services.generation
        self.account = bot.services.account
        self.groups = bot.services.groups
        self.messages = JobMessages(
            bot,
            interval_s=rt.settings.progress_edit_interval_s,
            token_max_age_s=rt.settings.interaction_token_max_age_s,
            channel_edit_window_s=rt.settings.channel_edit_window_s,
            expected_s=rt.settings.expected_latency_s,
        )
        self.tracker = self.messages.tracker
        self._events: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        """Listen to the dispatcher and adopt the unfinished jobs a previous run left."""
        subscription = self.account.events()

        async def consume() -> None:
            async for event in subscription:
                try:
                    await self.tracker.handle(event)
                except Exception:  # one event must not stop the listener
                    log.exception("handling %s failed", type(event).__name__)

        self._events = asyncio.create_task(consume(), name="peel-imagine-events")
        self._subscription = subscription
        self.tracker.start()
        for job in await self.account.unfinished_jobs():
            if job.kind is JobKind.BATCH:
                continue
            where = await self.account.message_of(job.id, STATUS)
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
                    notes=await self.service.message_lines_of(job),
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
        prompt="What to draw; {a, b}: a grid each; --ar W:H --seed N --no x --model --size --n --repeat N --sref URL",
        model="The Gemini image model",
        aspect_ratio="The picture's shape",
        size="The output size (2K and 4K on Pro / Nano Banana 2)",
        image="A reference image",
        refs="What the attached images are for, e.g. 1=style 2=character 3=object",
    )
    @app_commands.choices(model=MODEL_CHOICES, aspect_ratio=RATIO_CHOICES, size=SIZE_CHOICES)
    async def imagine(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, 1500],
        model: str | None = None,
        aspect_ratio: str | None = None,
        size: str | None = None,
        refs: app_commands.Range[str, 1, 200] | None = None,
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
        """Make a grid, or one grid per `{a, b}` permutation and `--repeat` run once the user says Go."""
        await interaction.response.defer(thinking=True)
        attachments = [a for a in (image, image2, image3, image4, image5, image6, image7, image8, image9, image10) if a]
        try:
            origin = await self._origin(interaction)
            files = await read_attachments(attachments)
            ref_keys = await self.service.take_references(files)
            plan = await self.service.imagine_all(
                prompt,
                origin,
                max_prompts=self.bot.runtime.settings.max_prompts_per_request,
                ref_keys=ref_keys,
                model=model,
                aspect_ratio=aspect_ratio,
                image_size=size,
                ref_names=[name for name, _data in files],
                ref_labels=refs,
            )
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await self._fail_interaction(interaction, exc, where="/imagine")
            return
        if len(plan.jobs) > 1:
            await self._ask_many(interaction, plan, origin)
            return

        async def make(_origin: Origin) -> Prepared:
            return plan.jobs[0]

        await self._launch(interaction, make, where="/imagine", origin=origin)

    async def _ask_many(self, interaction: discord.Interaction[Any], plan: ImaginePlan, origin: Origin) -> None:
        """Show the count and cost of many grids with Go / Cancel; Go queues them, each with its own message."""

        async def go(clicked: discord.Interaction[Any]) -> None:
            try:
                submitted = await self.service.submit_all(plan, origin)
            except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
                await send_error(clicked, exc, where="/imagine permutations")
                return
            shown = [s for s in submitted if await self._post_job(interaction, s)]
            with contextlib.suppress(discord.HTTPException):
                await clicked.edit_original_response(content=fit_content(f"Queued {len(shown)} grids."))

        text = many_grids_text(grids=len(plan.jobs), images=plan.images, cost_usd=plan.cost_usd)
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        view = ManyGridsView(plan, go)
        await interaction.followup.send(content=fit_content(text), view=fit_view(view), ephemeral=True)

    def _tracked(
        self, interaction: discord.Interaction[Any], submitted: Submitted, job: Job, *, own_message: bool
    ) -> Tracked:
        """Return how a submitted job is followed: in the interaction's response, or in a message of its own.

        One of many grids gets a channel message of its own, edited as a plain message: no interaction token to keep.
        """
        return Tracked(
            job_id=job.id,
            channel_id=interaction.channel_id or 0,
            message_id=None,
            owner_id=job.owner_id,
            display=submitted.prepared.display,
            label=submitted.prepared.label,
            notes=self.service.message_lines(submitted.prepared),
            interaction=None if own_message else interaction,
            token_at=0.0
            if own_message
            else self.tracker.now() - (discord.utils.utcnow() - interaction.created_at).total_seconds(),
            upload_limit=interaction.filesize_limit,
            position=submitted.result.position,
        )

    async def _post_job(self, interaction: discord.Interaction[Any], submitted: Submitted) -> bool:
        """Post one of many jobs in its own channel message and track it; False when it was not queued."""
        result = submitted.result
        if result.status is SubmitStatus.REFUSED or result.job is None:
            return False
        job = result.job
        t = self._tracked(interaction, submitted, job, own_message=True)
        try:
            message = await self.bot.get_partial_messageable(t.channel_id).send(
                content=fit_content(t.line(self.tracker.state_of(t))), allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException:
            log.warning("could not show job %s", job.id, exc_info=True)
            return False
        t.message_id = message.id
        t.pacer.edited(self.tracker.now())
        await self.account.record_message(job.id, STATUS, channel_id=t.channel_id, message_id=message.id)
        await self.tracker.track(t)
        return True

    # ---- buttons and modals ------------------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction[Any], action: str, job_id: JobId, index: int) -> None:
        """Run a grid or single-image button."""
        if await self._refused(interaction):
            return
        try:
            if action == "ed":
                await self._image(job_id, index)
                await interaction.response.send_modal(fit_modal(EditModal(job_id=job_id, index=index)))
                return
            if action == "vr":
                await self._region_picker(interaction, job_id, index)
                # Its job is asked for from the private picker, which does not know this message: the button turns
                # blue when the picker opens, as the other tools do when their job starts.
                await self.messages.mark_clicked(interaction)
                return
            if action == "vrt":
                await self._image(job_id, index)
                await interaction.response.send_modal(fit_modal(RegionModal(job_id=job_id, index=index)))
                return
            if action == "zc":
                await self._image(job_id, index)
                text = await self.service.remix_text(await self._job(job_id))
                await interaction.response.send_modal(fit_modal(CustomZoomModal(job_id=job_id, index=index, text=text)))
                return
            if action in ("v", "vs", "vx", "r"):
                prefs = await self.service.preferences(UserId(interaction.user.id))
                if prefs.remix:
                    job = await self._job(job_id)
                    title = "Remix: re-roll" if action == "r" else "Remix: vary"
                    text = await self.service.remix_text(job)
                    await interaction.response.send_modal(
                        fit_modal(PromptModal(title=title, action=action, job_id=job_id, index=index, text=text))
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
            await self._guarded(interaction, self.messages.separate(interaction, job_id, index), where="U")
            return
        await self._launch(interaction, self._maker(interaction, action, job_id, index, None), where=f"button {action}")

    async def _region_picker(self, interaction: discord.Interaction[Any], job_id: JobId, index: int) -> None:
        """Answer Vary (Region), to the clicker alone, with the image under a numbered 3×3 grid and the cells select.

        Deferred first: drawing the grid on a 4K image can take longer than Discord's 3 s to answer.
        """
        image = await self._image(job_id, index)  # a gone image is answered before anything is drawn
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            overlay = await self.service.region_picker(image)
            if len(overlay) > interaction.filesize_limit:
                raise GenerationError("The image is too large to show with its grid here; use “Type a box instead…”.")
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await self._fail_interaction(interaction, exc, where="region picker")
            return
        text = (
            "**Vary (Region)**: pick the cells to change (several make one box around them), then say what should "
            "be there."
        )
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(
                content=fit_content(text),
                attachments=[discord.File(io.BytesIO(overlay), f"{job_id}-{index + 1}-grid.png")],
                view=fit_view(region_picker_view(job_id, index)),
            )

    async def on_cells(self, interaction: discord.Interaction[Any], job_id: JobId, index: int, cells: str) -> None:
        """Open the prompt modal for the cells picked on the region picker; the cells travel in its custom id."""
        if await self._refused(interaction):
            return
        try:
            try:
                cells_region(cells)  # refuses anything but cell numbers before a modal carries them
            except RegionError as exc:
                raise GenerationError(str(exc), title="Unknown region") from exc
            image = await self._image(job_id, index)
            text = await self.service.remix_text(await self._job(image.job_id))
            modal = CellsPromptModal(job_id=job_id, index=index, cells=cells, text=text)
            await interaction.response.send_modal(fit_modal(modal))
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await send_error(interaction, exc, where="region picker")

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
        tool = ZOOM_MODAL.fullmatch(custom_id) or REGION_MODAL.fullmatch(custom_id)
        if remix is None and edit is None and tool is None:
            return
        if await self._refused(interaction):
            return
        values = modal_values(interaction.data)
        if tool is not None:
            await self.on_tool_modal(interaction, custom_id, JobId(tool["job"]), int(tool["index"]), values)
            return
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

    async def on_tool_modal(
        self, interaction: discord.Interaction[Any], custom_id: str, job_id: JobId, index: int, values: dict[str, str]
    ) -> None:
        """Run Custom Zoom or Vary (Region) from its modal."""
        await interaction.response.defer(thinking=True)
        prompt = values.get("prompt", "")

        async def make(origin: Origin) -> Prepared:
            image = await self._image(job_id, index)
            if custom_id.startswith("peel-zoom:"):
                job_prompt = prompt.strip() or await self.service.remix_text(await self._job(job_id))
                return await self.service.custom_zoom(image, origin, factor=values.get("zoom", ""), prompt=job_prompt)
            cells = REGION_MODAL.fullmatch(custom_id)
            region = cells_region(cells["cells"]) if cells and cells["cells"] else values.get("region", "")
            return await self.service.vary_region(image, origin, region=region, prompt=prompt)

        await self._launch(interaction, make, where="custom zoom" if custom_id.startswith("peel-zoom:") else "region")

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
            if action == "sq":
                return await s.make_square(image, origin)
            if action in PANS:
                return await s.pan(image, origin, direction=PANS[action])
            raise GenerationError(f"Peel doesn't know the button {action!r}.")

        return make

    async def _favourite(self, interaction: discord.Interaction[Any], job_id: JobId, index: int) -> None:
        image = await self._image(job_id, index)
        check_owner(self.bot.access, interaction.user, interaction.guild_id, image.owner_id, "image")
        added = await self.service.toggle_favourite(image)
        text = "❤️ Added to your favourites." if added else "Removed from your favourites."
        await interaction.response.send_message(fit_content(text), ephemeral=True)

    # ---- the lifecycle -----------------------------------------------------------------------------------------

    async def _origin(self, interaction: discord.Interaction[Any]) -> Origin:
        return await origin_of(
            self.bot, interaction.user, interaction.channel, interaction.guild_id, key=f"i:{interaction.id}"
        )

    async def launch(self, interaction: discord.Interaction[Any], make: Maker, *, where: str) -> None:
        """Build, submit and follow a grid for another cog's deferred interaction (`/blend`, `/describe`'s buttons)."""
        await self._launch(interaction, make, where=where)

    async def post_all(self, interaction: discord.Interaction[Any], plan: ImaginePlan, origin: Origin) -> int:
        """Submit every grid of a plan, each followed in a channel message of its own; return how many were queued.

        Raises:
            GenerationError: the queue or a budget cannot take them all; nothing was submitted.
        """
        submitted = await self.service.submit_all(plan, origin)
        return sum([await self._post_job(interaction, s) for s in submitted])

    async def _launch(
        self, interaction: discord.Interaction[Any], make: Maker, *, where: str, origin: Origin | None = None
    ) -> None:
        """Build, submit and track a job for a deferred interaction; errors replace the loading message."""
        try:
            origin = origin or await self._origin(interaction)
            submitted = await self.service.submit(await make(origin))
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await self._fail_interaction(interaction, exc, where=where)
            return
        result = submitted.result
        if result.status is SubmitStatus.REFUSED or result.job is None:
            await self._fail_interaction(interaction, GenerationError(result.message, title=REFUSAL_TITLE), where=where)
            return
        job = result.job
        t = self._tracked(interaction, submitted, job, own_message=False)
        try:
            message = await interaction.edit_original_response(
                content=fit_content(t.line(self.tracker.state_of(t))), allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException:
            log.warning("could not show job %s", job.id, exc_info=True)
            return
        t.message_id = message.id
        t.pacer.edited(self.tracker.now())
        await self.account.record_message(job.id, STATUS, channel_id=t.channel_id, message_id=message.id)
        await self.tracker.track(t)
        await self.messages.mark_clicked(interaction)  # the button that made it turns blue, as U does
        await self._tell(interaction, submitted)

    async def _tell(self, interaction: discord.Interaction[Any], submitted: Submitted) -> None:
        """Tell the user alone what the job's message does not: that it waits behind their other jobs.

        The request's notes (ignored parameters, a snapped ratio) are under the job's own line (`Tracked.notes`).
        """
        result = submitted.result
        embeds: list[discord.Embed] = []
        if result.status is SubmitStatus.WAITING:
            embeds.append(
                error_embed(
                    "Job queued",
                    "You already have the most jobs running at once; this one starts when one of them finishes.",
                    warning=True,
                )
            )
        if embeds:
            with contextlib.suppress(discord.HTTPException):
                await interaction.followup.send(embeds=fit_embeds(embeds), ephemeral=True)

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

    # ---- helpers -----------------------------------------------------------------------------------------------

    async def _refused(self, interaction: discord.Interaction[Any]) -> bool:
        refusal = refusal_text(self.bot.access, interaction.user, interaction.guild_id)
        if refusal is None:
            return False
        await interaction.response.send_message(embed=fit_embed(error_embed("No access", refusal)), ephemeral=True)
        return True

    async def _job(self, job_id: JobId) -> Job:
        return await self.service.job(job_id)

    async def _image(self, job_id: JobId, index: int) -> Image:
        return await self.service.image(job_id, index)


async def setup(bot: commands.Bot) -> None:
    """Load the extension."""
    assert isinstance(bot, PeelBot)
    bot.add_dynamic_items(PeelButton, RegionCellsSelect)
    cog = ImagineCog(bot)
    await bot.add_cog(cog)
    await bot.add_cog(ReplyEditCog(bot, cog.tracker))


__all__ = ["ImagineCog", "ReplyEditCog", "setup"]
