"""`/batch`: one prompt over a ZIP of images, run as one job in its own thread with one live progress message.

Flow: `/batch` → an ephemeral plan (accepted, skipped, estimated cost and time) with **Start** / **Try on N** /
**Cancel** (Try on N runs the first N images, shows them and offers **Start the rest**, `BATCH_SAMPLE_SIZE`) → Start
opens a thread (the batch's group) holding one progress message, edited at most every
`batch_progress_interval_s`, with **Pause** / **Resume** / **Cancel** → at the end a summary message with the ZIP link,
**Retry failed**, **Retry failed, changed…** (a modal: an edited prompt or another model for the failed images, run
as a new batch in the same thread after its own plan and Start) and **New link**. Every button is a `DynamicItem`
resolved from the store or the ledger, so all of them keep working after a restart; the progress message is found
again through the ledger's job messages.
"""

import asyncio
import contextlib
import dataclasses
import io
import logging
import re
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.batches import BatchService
from bot.app.batchplan import STATUS, SUMMARY, BatchError, BatchOptions, BatchPlan, BatchRequest, plan_summary
from bot.app.gallery import GalleryService
from bot.app.imaging import grid_preview
from bot.core.batch import Speed, progress_message, summary_message
from bot.core.budgets import Refused
from bot.core.discord_limits import LINK_URL as MAX_LINK_URL
from bot.core.events import JobPaused, ServiceDown, ServiceRestored
from bot.core.models import Group, Job, JobId, JobKind, JobStatus, UserId
from bot.core.render import (
    CUSTOM_ID_PREFIX,
    CustomId,
    discord_time,
    echo,
    fresh_zip_line,
    relax_paused_text,
    truncate,
)
from bot.errors import UserFacingError
from bot.exts._access import AccessPolicy, NotOwnerError, actor_of
from bot.exts._errors import send_error
from bot.exts._send import fit_content, fit_modal, fit_thread_name, fit_view
from bot.exts.imagine._components import modal_values
from bot.exts.imagine._inputs import read_attachments
from worker.contract import IMAGE_SIZES, ErrorCode

log = logging.getLogger(__name__)

ACTIONS = ("start", "try", "drop", "pause", "resume", "rest", "stop", "retry", "other", "again", "link")
TEMPLATE = rf"{CUSTOM_ID_PREFIX}:batch-(?P<action>{'|'.join(ACTIONS)}):(?P<job>[A-Za-z0-9_.-]+):(?P<index>[0-9]+)"
SAMPLE_MAX_BYTES = 8 * 1024 * 1024  # the first-results grid fits any server's upload limit
PLAN_SWEEP_S = 3600.0  # how often plans past batch_plan_ttl_s are forgotten
THREAD_GONE_CODES = frozenset({10003, 50001})  # the thread was deleted, or the bot lost access to it
MOVED_SUMMARY = "-# This batch's thread was deleted or is out of reach, so its summary is posted here."

_BUTTONS: dict[str, tuple[str, discord.ButtonStyle]] = {
    "start": ("Start", discord.ButtonStyle.success),
    "try": ("Try on a few", discord.ButtonStyle.primary),  # labelled with its number where it is shown
    "drop": ("Cancel", discord.ButtonStyle.secondary),
    "pause": ("Pause", discord.ButtonStyle.secondary),
    "resume": ("Resume", discord.ButtonStyle.primary),
    "rest": ("Start the rest", discord.ButtonStyle.success),
    "stop": ("Cancel", discord.ButtonStyle.danger),
    "retry": ("Retry failed", discord.ButtonStyle.primary),
    "other": ("Retry failed (other speed)", discord.ButtonStyle.secondary),  # labelled with the speed where shown
    "again": ("Retry failed, changed…", discord.ButtonStyle.secondary),
    "link": ("New link", discord.ButtonStyle.secondary),
}


class BatchButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """Every batch button: `peel:batch-<action>:<plan or job id>:0`."""

    def __init__(self, action: str, target: str, *, label: str | None = None) -> None:
        default_label, style = _BUTTONS[action]
        label = label or default_label
        super().__init__(
            discord.ui.Button(
                label=label, style=style, custom_id=CustomId(action=f"batch-{action}", job_id=target).encode()
            )
        )
        self.action = action
        self.target = target

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> "BatchButton":
        """Rebuild the button from its custom id."""
        return cls(str(match["action"]), str(match["job"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Hand the click to the cog (the one place that knows the services)."""
        cog = interaction.client.get_cog(BatchCog.__cog_name__)
        try:
            if not isinstance(cog, BatchCog):
                raise UserFacingError("Batches are not available right now. Try again in a moment.")
            await cog.on_button(interaction, self.action, self.target)
        except Exception as exc:  # noqa: BLE001 - a button is a boundary; send_error logs it
            await send_error(interaction, exc, where=f"batch button {self.action}")


RETRY_MODAL = re.compile(r"peel-batch-retry:(?P<job>[A-Za-z0-9_.-]+)")


class RetryModal(discord.ui.Modal):
    """The "Retry failed, changed…" modal: the batch's prompt to edit and its model to change, for its failed images.

    Its submission is handled by `BatchCog.on_interaction` from the custom id and the values (a modal lives in
    discord.py's memory; one opened before a restart would otherwise fail on submit). Modals hold text inputs, so
    the model is typed (`flash`, `pro`, `flash3` or an id), as `/batch`'s own `model` option is, and so is the speed.
    """

    def __init__(self, *, job_id: JobId, prompt: str, model: str, speed: Speed = Speed.FAST) -> None:
        super().__init__(title="Retry failed, changed", custom_id=f"peel-batch-retry:{job_id}", timeout=15 * 60)
        self.prompt: discord.ui.TextInput[RetryModal] = discord.ui.TextInput(
            label="Prompt ({prompt} {name} {folder} work)",
            style=discord.TextStyle.paragraph,
            default=prompt,  # cut to 4,000 where it is sent (`fit_modal`)
            max_length=4000,
            custom_id="prompt",
        )
        self.model: discord.ui.TextInput[RetryModal] = discord.ui.TextInput(
            label="Model", default=model, required=False, max_length=100, custom_id="model"
        )
        self.speed: discord.ui.TextInput[RetryModal] = discord.ui.TextInput(
            label="Speed: fast or relax (half price)",
            default=speed.value,
            required=False,
            max_length=10,
            custom_id="speed",
        )
        self.add_item(self.prompt)
        self.add_item(self.model)
        self.add_item(self.speed)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Leave the submission to the cog (see the class)."""


def typed_speed(text: str | None) -> bool | None:
    """Return the relax flag a typed speed asks for (`fast` / `relax`; empty: unchanged).

    Raises:
        UserFacingError: anything else.
    """
    word = (text or "").strip().lower()
    if not word:
        return None
    if word not in {s.value for s in Speed}:
        raise UserFacingError(f"Speed is `fast` or `relax`, not {word!r}.", title="Invalid speed")
    return word == Speed.RELAX


def _other_speed(job: Job) -> str:
    """The label of the button that retries a batch's failed images at the speed it did not run at."""
    return "Retry failed (fast)" if job.params.relax else "Retry failed (relax, half price)"


def _pause_or_resume(job: Job) -> str:
    """The one of Pause and Resume that applies to the batch now (a paused batch can only be resumed)."""
    return "resume" if job.status is JobStatus.PAUSED else "pause"


def _view(target: str, *actions: str, labels: dict[str, str] | None = None) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(BatchButton(action, target, label=(labels or {}).get(action)))
    return view


class BatchCog(commands.Cog):
    """`/batch`, its buttons, and the task that keeps progress messages up to date."""

    def __init__(self, bot: commands.Bot, service: BatchService, gallery: GalleryService | None = None) -> None:
        self.bot = bot
        self.service = service
        self.gallery = gallery
        self._gallery_urls: dict[JobId, str | None] = {}  # each batch's gallery page, asked once per process
        self._rt = service.runtime
        self._dirty: set[JobId] = set()
        self._last_text: dict[JobId, str] = {}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def cog_load(self) -> None:
        """Listen to the dispatcher and start the progress loop; batches left running by a restart refresh."""
        subscription = self.service.events()
        self._tasks = [
            asyncio.create_task(self._listen(subscription), name="peel-batch-events"),
            asyncio.create_task(self._progress_loop(), name="peel-batch-progress"),
            asyncio.create_task(self._sweep_loop(), name="peel-batch-plan-sweep"),
        ]
        for job in await self.service.unfinished():
            self._mark(job.id)

    async def cog_unload(self) -> None:
        """Stop the listener and the progress loop."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _mark(self, job_id: JobId) -> None:
        self._dirty.add(job_id)
        self._changed.set()

    async def _listen(self, subscription: Any) -> None:
        with subscription:
            async for event in subscription:
                if isinstance(event, ServiceDown | ServiceRestored):  # every running batch says it is delayed
                    for unfinished in await self.service.unfinished():
                        self._mark(unfinished.id)
                    continue
                job = getattr(event, "job", None)
                if job is not None and job.kind is JobKind.BATCH:
                    self._mark(job.id)
                    if isinstance(event, JobPaused) and event.budget is not None:
                        await self._tell_budget_pause(event.job, event.budget)

    async def _tell_budget_pause(self, job: Job, refused: Refused) -> None:
        """Ping a batch's owner in its thread when it pauses at a money cap: the progress edit alone notifies nobody."""
        where = await self.service.message_of(job.id, STATUS)
        if where is None:
            return
        text = f"<@{job.owner_id}> {self.service.budget_paused_text(refused)}"
        try:
            await self.bot.get_partial_messageable(where[0]).send(
                content=fit_content(text),
                allowed_mentions=discord.AllowedMentions(
                    users=[discord.Object(job.owner_id)], roles=False, everyone=False
                ),
            )
        except discord.HTTPException as exc:  # the thread is gone or closed: the progress message still says it
            log.warning(
                "batch %s: the budget pause notice was refused (%s)", job.id, exc.status, extra={"job_id": job.id}
            )

    async def _progress_loop(self) -> None:
        """Refresh changed batches, each at most once per interval (Discord rate-limits edits; edits coalesce)."""
        interval = self._rt.settings.batch_progress_interval_s
        while True:
            await self._changed.wait()
            self._changed.clear()
            dirty, self._dirty = self._dirty, set()
            for job_id in dirty:
                try:
                    await self._refresh(job_id)
                except Exception:  # one refresh is a boundary: log it, try again on the next change
                    log.exception("refreshing batch %s failed", job_id, extra={"job_id": job_id})
            await asyncio.sleep(interval)

    async def _sweep_loop(self) -> None:
        """Forget expired plans now (a restart may have left some) and then every hour."""
        while True:
            try:
                await self.service.sweep_plans()
            except Exception:  # a sweep is a boundary: log it, the next one tries again
                log.exception("sweeping expired batch plans failed")
            await asyncio.sleep(PLAN_SWEEP_S)

    async def _refresh(self, job_id: JobId) -> None:
        snapshot = await self.service.snapshot(job_id)
        where = await self.service.message_of(job_id, STATUS)
        if snapshot is None or where is None:
            return
        job = snapshot.job
        plan = await self.service.plan_of(job_id)
        prompt = plan.display_prompt if plan else job.prompt
        progress = snapshot.progress
        if (outage := self.service.outage()) is not None:
            progress = dataclasses.replace(
                progress, delayed_since=discord_time(outage.since), delayed_service=outage.service
            )
        text = progress_message(prompt=prompt, owner_mention=f"<@{job.owner_id}>", progress=progress)
        gone = await self.service.progress_gone(job_id)
        if gone is None and self._last_text.get(job_id) != text:
            channel_id, message_id = where
            message = self.bot.get_partial_messageable(channel_id).get_partial_message(message_id)
            view = None if job.status.is_final else _view(job_id, _pause_or_resume(job), "stop")
            if view is not None:
                await self._add_gallery(view, job)
            try:
                await message.edit(
                    content=fit_content(text),
                    view=None if view is None else fit_view(view),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
            except (discord.NotFound, discord.Forbidden) as exc:
                gone = await self._progress_gone(job_id, channel_id, exc)
            else:
                self._last_text[job_id] = text
        if job.status.is_final:
            await self._post_summary(job_id, plan)
        elif gone not in THREAD_GONE_CODES and (samples := await self.service.take_samples(job)) is not None:
            try:
                await self._post_samples(where[0], job, samples)
            except (discord.NotFound, discord.Forbidden) as exc:
                await self._progress_gone(job_id, where[0], exc)

    async def _progress_gone(self, job_id: JobId, channel_id: int, exc: discord.HTTPException) -> int:
        """Stop editing a progress message Discord refuses (thread deleted, access lost, message deleted)."""
        log.warning(
            "batch %s: Discord refused its progress message in channel %s (code %d); it is no longer updated and "
            "the summary goes elsewhere if the thread is gone",
            job_id,
            channel_id,
            exc.code,
            extra={"job_id": job_id, "action": "progress_gone"},
        )
        await self.service.mark_progress_gone(job_id, exc.code)
        return exc.code

    async def _post_samples(self, channel_id: int, job: Job, samples: list[tuple[str, bytes]]) -> None:
        """Show a running batch's first results in its thread, so a wrong prompt is caught before 10,000 images."""
        if not samples:
            return
        grid = await asyncio.to_thread(grid_preview, [d for _, d in samples], max_bytes=SAMPLE_MAX_BYTES, stem="first")
        names = " · ".join(
            f"{i}. {truncate(echo(name.rsplit('/', 1)[-1]), 40)}" for i, (name, _) in enumerate(samples, 1)
        )
        trial = await self.service.trial_of(job)
        view: discord.ui.View | None = None
        if trial is None:
            stops = (
                "**Cancel** the batch above: Gemini's batch is cancelled too and nothing unmade is charged "
                "(**Pause** sends nothing new, but Gemini cannot pause what it holds)."
                if job.params.relax
                else "**Pause** or **Cancel** the batch above: no new image starts after that, only the ones being "
                "made at that moment are finished."
            )
            text = f"🖼️ **First results** ({len(samples)} of {job.total:,}): {names}\n-# Not what you wanted? {stops}"
        else:
            rest = job.total - trial
            cost = await self.service.rest_cost(job, trial)
            text = (
                f"🧪 **Trial** ({len(samples)} made of the first {trial}): {names}\n"
                f"**Start the rest** makes the other {rest:,} images (≈ ${cost:.2f}); "
                "the trial's images are part of the batch. Not what you wanted? **Cancel** the batch above."
            )
            view = _view(job.id, "rest", labels={"rest": f"Start the rest ({rest:,})"})
        channel = self.bot.get_partial_messageable(channel_id)
        await channel.send(
            content=fit_content(text),
            file=discord.File(io.BytesIO(grid.data), grid.filename),
            allowed_mentions=discord.AllowedMentions.none(),
            view=fit_view(view) if view is not None else discord.utils.MISSING,
        )

    async def _post_summary(self, job_id: JobId, plan: BatchPlan | None) -> None:
        snapshot = await self.service.snapshot(job_id)
        if snapshot is None:
            return
        job = snapshot.job
        run = (job.finished_at or job.created_at).isoformat()
        if await self.service.summary_posted_for(job_id) == run:
            return
        where = await self.service.message_of(job_id, STATUS)
        if where is None:
            return
        download = await self.service.build_download(job)
        p = snapshot.progress
        text = summary_message(
            prompt=plan.display_prompt if plan else job.prompt,
            owner_mention=f"<@{job.owner_id}>",
            state=p.state,
            ok=p.done,
            failed=p.failed,
            blocked=p.blocked,
            cancelled=job.cancelled,
            skipped=len(plan.skipped) if plan else 0,
            cost_usd=p.cost_usd,
            errors=snapshot.errors,
            link=download.url,
            expires_s=self._rt.link_lifetime_s,
            relax=job.params.relax,
        )
        # EXPIRED (a Gemini batch that expired or failed) is never retried by itself, but "Retry failed" runs it.
        retryable = sum(
            n
            for code, n in snapshot.errors.items()
            if code == ErrorCode.EXPIRED.value or (code in ErrorCode.__members__ and ErrorCode(code).is_retryable)
        )
        changeable = sum(n for code, n in snapshot.errors.items() if code != ErrorCode.TOO_LARGE.value)
        # The other speed is offered where it can run: relax needs the bot's own Gemini key beside RunPod.
        other = ("other",) if job.params.relax or self.service.relax_available() else ()
        actions = (*(("retry", *other) if retryable else ()), *(("again",) if changeable else ()), "link")
        view = _view(job_id, *actions, labels={"other": _other_speed(job)})
        if len(download.url) <= MAX_LINK_URL:
            view.add_item(discord.ui.Button(label="Download ZIP", style=discord.ButtonStyle.link, url=download.url))
        await self._add_gallery(view, job)
        message = await self._send_summary(job, where[0], text, view)
        if message is not None:
            await self.service.record_message(job_id, SUMMARY, channel_id=message.channel.id, message_id=message.id)
        await self.service.mark_summary_posted(job_id, run)

    async def _send_summary(self, job: Job, thread_id: int, text: str, view: discord.ui.View) -> discord.Message | None:
        """Post the summary in the batch's thread; if the thread is gone, in its channel; if that fails, by DM."""
        if await self.service.progress_gone(job.id) not in THREAD_GONE_CODES:
            try:
                return await self.bot.get_partial_messageable(thread_id).send(
                    content=fit_content(text), view=fit_view(view), allowed_mentions=discord.AllowedMentions.none()
                )
            except (discord.NotFound, discord.Forbidden) as exc:
                await self._progress_gone(job.id, thread_id, exc)
        moved = f"{MOVED_SUMMARY}\n{text}"
        group = await self.service.group_of(job)
        if group is not None and group.channel_id is not None:
            try:
                return await self.bot.get_partial_messageable(group.channel_id).send(
                    content=fit_content(moved), view=fit_view(view), allowed_mentions=discord.AllowedMentions.none()
                )
            except (discord.NotFound, discord.Forbidden) as exc:
                log.warning(
                    "batch %s: its channel %s refused the summary too (code %d); sending it to the owner by DM",
                    job.id,
                    group.channel_id,
                    exc.code,
                    extra={"job_id": job.id},
                )
        try:
            owner = self.bot.get_user(job.owner_id) or await self.bot.fetch_user(job.owner_id)
            return await owner.send(
                content=fit_content(moved), view=fit_view(view), allowed_mentions=discord.AllowedMentions.none()
            )
        except (discord.NotFound, discord.Forbidden) as exc:
            log.warning(
                "batch %s: its summary could not be delivered anywhere (DM refused, code %d)",
                job.id,
                exc.code,
                extra={"job_id": job.id},
            )
        return None

    # ---- /batch ------------------------------------------------------------------------------------------------

    @app_commands.command(
        name="batch", description="A prompt, or the ZIP's prompts.csv or captions, over a ZIP (attachment or URL)"
    )
    @app_commands.rename(zip_file="zip")
    @app_commands.describe(
        prompt="What to do with each image (--ar 16:9 works too); a template with {prompt} {name} {folder}; "
        "optional when the ZIP has a prompts.csv or captions",
        zip_file="A ZIP of images (Discord caps attachments; use url for big ones)",
        url="A link to a ZIP of images",
        model="Gemini model (flash, pro, flash3 or a model id)",
        aspect_ratio="Aspect ratio of the outputs, e.g. 1:1 or 16:9",
        size="Output size",
        speed="fast, or relax: Gemini's Batch API at half the price, usually within hours, at most 24 h",
        ref1="A reference image given to every item (a style, a logo)",
        ref2="A second shared reference image",
        ref3="A third shared reference image",
    )
    @app_commands.choices(
        size=[app_commands.Choice(name=s, value=s) for s in IMAGE_SIZES],
        speed=[app_commands.Choice(name=s.value, value=s.value) for s in Speed],
    )
    async def batch(
        self,
        interaction: discord.Interaction[Any],
        # Optional: a ZIP with a prompts.csv / .jsonl or captions carries its own prompts (the plan refuses a ZIP
        # without any). Every option is then optional, which Discord allows: only a required option may not follow
        # an optional one (https://discord.com/developers/docs/interactions/application-commands).
        prompt: app_commands.Range[str, 1, 1000] | None = None,
        zip_file: discord.Attachment | None = None,
        url: str | None = None,
        model: str | None = None,
        aspect_ratio: str | None = None,
        size: str | None = None,
        speed: str | None = None,
        ref1: discord.Attachment | None = None,
        ref2: discord.Attachment | None = None,
        ref3: discord.Attachment | None = None,
    ) -> None:
        """Plan a batch and show its summary with Start and Cancel (nothing is queued yet)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        if zip_file is None and url is None:
            raise UserFacingError("A batch needs its images: attach a ZIP (`zip`) or give a link to one (`url`).")
        if zip_file is not None and url is not None:
            raise UserFacingError("Give either a ZIP attachment (`zip`) or a link to one (`url`), not both.")
        channel_id = interaction.channel_id
        assert channel_id is not None  # slash commands always come from a channel
        request = BatchRequest(
            owner_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=channel_id,
            prompt=prompt or "",
            options=BatchOptions(model=model, aspect_ratio=aspect_ratio, image_size=size, relax=typed_speed(speed)),
            is_admin=self._is_admin(interaction.user, interaction.guild_id),
            refs=tuple(await read_attachments([a for a in (ref1, ref2, ref3) if a is not None])),
            role_ids=actor_of(interaction.user, interaction.guild_id).role_ids,  # their roles' budget gates and caps
        )
        if zip_file is not None:
            plan = await self.service.plan_from_attachment(
                zip_file.url, request, source=zip_file.filename, size=zip_file.size
            )
        else:
            assert url is not None
            plan = await self.service.plan_from_url(url, request)
        budget = await self.service.budget_line(plan, is_admin=request.is_admin, role_ids=request.role_ids)
        text = plan_summary(plan, self.service.estimate(plan), budget=budget)
        trial = self._rt.settings.batch_sample_size
        actions = ("start", "try", "drop") if 0 < trial < len(plan.items) else ("start", "drop")
        await interaction.followup.send(
            content=fit_content(text),
            view=fit_view(_view(plan.id, *actions, labels={"try": f"Try on {trial}"})),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    # ---- buttons ---------------------------------------------------------------------------------------------

    def _is_admin(self, user: discord.abc.User, guild_id: int | None) -> bool:
        is_admin = getattr(self.bot, "is_admin", None)
        return bool(is_admin(user, guild_id)) if callable(is_admin) else False

    async def on_button(self, interaction: discord.Interaction[Any], action: str, target: str) -> None:
        """Run one batch button."""
        if action in ("start", "try", "drop"):
            await self._on_plan_button(interaction, action, target)
            return
        job_id = JobId(target)
        job = await self.service.job(job_id)
        if job is None:
            raise UserFacingError("This batch no longer exists.")
        is_admin = self._is_admin(interaction.user, interaction.guild_id)
        if job.owner_id != interaction.user.id and not is_admin:  # every action on a batch, "New link" too
            raise NotOwnerError("batch")
        if action == "again":  # a modal is the interaction's first answer: no defer before it
            model, speed = job.params.model, Speed.RELAX if job.params.relax else Speed.FAST
            modal = RetryModal(job_id=job_id, prompt=await self.service.retry_prompt(job), model=model, speed=speed)
            await interaction.response.send_modal(fit_modal(modal))
            return
        if action == "other":  # the failed images at the other speed: a new batch, planned and priced before Start
            await self._plan_retry(interaction, job_id, prompt=None, model=None, relax=not job.params.relax)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        if action == "link":
            url = await self.service.fresh_link(job)
            await interaction.followup.send(
                fit_content(fresh_zip_line(url, expires_s=self._rt.link_lifetime_s)), ephemeral=True
            )
            return
        if action == "pause":
            job = await self.service.pause(job_id)
            paused = job.status is JobStatus.PAUSED
            message = (
                "Batch pausing: no new image starts; the ones being made now finish and are kept. Its message "
                "says paused once they have, and Resume makes exactly the rest."
                if paused
                else (f"The batch is {job.status.value}; it can't be paused.")
            )
            if paused and job.params.relax:  # Gemini's Batch API cancels a batch but cannot pause one
                held = await self.service.relax_status(job_id)
                message = relax_paused_text(0 if held is None else held.sent)
        elif action in ("resume", "rest"):  # "Start the rest" of a trial is the one Resume that releases the rest
            job = await self.service.resume(job_id, rest=action == "rest")
            resumed = job.status in (JobStatus.RUNNING, JobStatus.QUEUED)
            trial = await self.service.trial_of(job)
            message = "Batch resumed." if resumed else f"The batch is {job.status.value}; nothing to resume."
            if resumed and action == "rest":
                message = f"Starting the other {job.remaining:,} images of the batch."
                if interaction.message is not None:  # the trial's offer is taken: its button goes
                    with contextlib.suppress(discord.HTTPException):
                        await interaction.message.edit(view=None)
            elif resumed and trial is not None:
                message = (
                    f"Trial resumed: only its first {trial:,} images run; the other {job.total - trial:,} wait for "
                    "**Start the rest**."
                )
        elif action == "stop":
            result = await self.service.cancel(job_id, UserId(interaction.user.id), is_admin=is_admin)
            message = "Batch cancelled; the ZIP of what was made follows." if result.cancelled else result.message
            if result.cancelled and job.params.relax:
                message = (
                    "Batch cancelled, and its Gemini batches with it: images not made are not charged. "
                    "The ZIP of what was made follows."
                )
        else:  # retry
            job, requeued = await self.service.retry_failed(job_id)
            message = (
                f"Retrying {requeued} failed image(s). Safety blocks and bad inputs are not retried."
                if requeued
                else "Nothing to retry: the failed images were blocked for safety or had bad inputs, which a retry "
                "cannot change."
            )
        self._mark(job_id)
        await interaction.followup.send(fit_content(message), ephemeral=True)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Plan a submitted "Retry failed, changed…" modal, whenever it was opened (see `RetryModal`)."""
        if interaction.type is not discord.InteractionType.modal_submit or not isinstance(interaction.data, dict):
            return
        match = RETRY_MODAL.fullmatch(str(interaction.data.get("custom_id", "")))
        if match is None:
            return
        try:
            values = modal_values(interaction.data)
            await self.on_retry_changed(
                interaction,
                JobId(match["job"]),
                prompt=values.get("prompt"),
                model=values.get("model"),
                relax=typed_speed(values.get("speed")),
            )
        except Exception as exc:  # noqa: BLE001 - a modal is a boundary; send_error logs it
            await send_error(interaction, exc, where="batch retry modal")

    async def on_retry_changed(
        self,
        interaction: discord.Interaction[Any],
        job_id: JobId,
        *,
        prompt: str | None,
        model: str | None,
        relax: bool | None = None,
    ) -> None:
        """Show the plan of a changed retry (count, cost, time) with Start and Cancel; nothing is queued yet."""
        await self._plan_retry(interaction, job_id, prompt=prompt, model=model, relax=relax)

    async def _plan_retry(
        self,
        interaction: discord.Interaction[Any],
        job_id: JobId,
        *,
        prompt: str | None,
        model: str | None,
        relax: bool | None,
    ) -> None:
        """Plan a retry of a batch's failed images as a new batch, and show it with Start and Cancel."""
        job = await self.service.job(job_id)
        if job is None:
            raise UserFacingError("This batch no longer exists.")
        if job.owner_id != interaction.user.id:  # the retry is a new batch of the owner's, started by them
            raise UserFacingError("Only the person who ran this batch can retry it changed.", title="Not your batch")
        await interaction.response.defer(ephemeral=True, thinking=True)
        channel_id = interaction.channel_id
        assert channel_id is not None  # a modal opened from a message in a channel or thread
        plan = await self.service.plan_retry(
            job_id,
            prompt=prompt,
            model=model,
            channel_id=channel_id,
            is_admin=self._is_admin(interaction.user, interaction.guild_id),
            relax=relax,
            role_ids=actor_of(interaction.user, interaction.guild_id).role_ids,
        )
        budget = await self.service.budget_line(
            plan,
            is_admin=self._is_admin(interaction.user, interaction.guild_id),
            role_ids=actor_of(interaction.user, interaction.guild_id).role_ids,
        )
        await interaction.followup.send(
            content=fit_content(plan_summary(plan, self.service.estimate(plan), budget=budget)),
            view=fit_view(_view(plan.id, "start", "drop")),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def _on_plan_button(self, interaction: discord.Interaction[Any], action: str, plan_id: str) -> None:
        await interaction.response.defer()
        existing = await self.service.started_job(plan_id)
        if existing is not None:
            where = await self.service.message_of(existing.id, STATUS)
            place = f" in <#{where[0]}>" if where else ""
            await interaction.followup.send(fit_content(f"This batch has already started{place}."), ephemeral=True)
            return
        plan = await self.service.get_plan(plan_id)
        if plan is None:
            raise UserFacingError("This batch was cancelled or has expired. Run `/batch` again.")
        if plan.owner_id != interaction.user.id:
            raise UserFacingError("Only the person who ran `/batch` can start or cancel it.", title="Not your batch")
        if action == "drop":
            await self.service.discard_plan(plan_id)
            await interaction.edit_original_response(content="Batch cancelled. Nothing was queued.", view=None)
            return
        is_admin = self._is_admin(interaction.user, interaction.guild_id)
        roles = actor_of(interaction.user, interaction.guild_id).role_ids
        await self.service.check_limits(plan, is_admin=is_admin, role_ids=roles)  # before a thread is opened for it
        thread, group = await self._thread_of(plan)
        try:
            trial = self._rt.settings.batch_sample_size if action == "try" else None
            result = await self.service.start(plan, group_id=group.id, is_admin=is_admin, trial=trial, role_ids=roles)
        except BatchError as exc:
            await thread.send(fit_content(f"This batch could not start: {exc.user_message}"))
            raise
        assert result.job is not None  # start raises when refused
        job = result.job
        snapshot = await self.service.snapshot(job.id)
        assert snapshot is not None
        text = progress_message(
            prompt=plan.display_prompt, owner_mention=f"<@{job.owner_id}>", progress=snapshot.progress
        )
        # The thread's gallery link is issued now, by its owner: it may export when they may (their roles are known
        # here, in their interaction, and not later).
        self._gallery_urls[job.id] = await self._gallery_url(
            job, can_export=self._may_export(interaction.user, interaction.guild_id)
        )
        view = _view(job.id, _pause_or_resume(job), "stop")
        await self._add_gallery(view, job)
        progress = await thread.send(
            content=fit_content(text), view=fit_view(view), allowed_mentions=discord.AllowedMentions.none()
        )
        self._last_text[job.id] = text
        await self.service.record_message(job.id, STATUS, channel_id=thread.id, message_id=progress.id)
        self._mark(job.id)
        await interaction.edit_original_response(
            content=fit_content(f"Started: {len(plan.items):,} images in {thread.mention}. {result.message}"), view=None
        )

    async def _add_gallery(self, view: discord.ui.View, job: Job) -> None:
        """Add the batch's "Gallery" link button (its thread's gallery page, showing this batch) when there is one."""
        if job.id not in self._gallery_urls:
            self._gallery_urls[job.id] = await self._gallery_url(job)
        url = self._gallery_urls[job.id]
        if url is not None:
            view.add_item(discord.ui.Button(label="Gallery", emoji="🖼️", style=discord.ButtonStyle.link, url=url))

    async def _gallery_url(self, job: Job, *, can_export: bool = False) -> str | None:
        if self.gallery is None or not self.gallery.available():
            return None
        group = await self.service.group_of(job)
        if group is None:
            return None
        link = await self.gallery.link(group, issued_by=job.owner_id, can_export=can_export, job_id=job.id)
        return link.url

    def _may_export(self, user: discord.abc.User, guild_id: int | None) -> bool:
        access = getattr(self.bot, "access", None)  # PeelBot's policy, without importing PeelBot (a cycle)
        return isinstance(access, AccessPolicy) and access.may_export(actor_of(user, guild_id))

    async def _thread_of(self, plan: BatchPlan) -> tuple[discord.Thread, Group]:
        """Return where a plan runs: the retried batch's thread for a changed retry, else a new thread."""
        if plan.retry_of is not None:
            original = await self.service.job(JobId(plan.retry_of))
            group = await self.service.group_of(original) if original is not None else None
            if group is not None and group.thread_id is not None:
                try:
                    thread = self.bot.get_channel(group.thread_id) or await self.bot.fetch_channel(group.thread_id)
                except (discord.NotFound, discord.Forbidden):
                    thread = None  # the thread is gone: the retry gets a thread of its own
                if isinstance(thread, discord.Thread):
                    return thread, group
        thread = await self._open_thread(plan)
        return thread, await self.service.open_group(plan, channel_id=thread.parent_id, thread_id=thread.id)

    async def _open_thread(self, plan: BatchPlan) -> discord.Thread:
        channel = self.bot.get_channel(plan.channel_id) or await self.bot.fetch_channel(plan.channel_id)
        if isinstance(channel, discord.Thread):
            channel = channel.parent or await self.bot.fetch_channel(channel.parent_id)
        if not isinstance(channel, discord.TextChannel):
            raise UserFacingError("Batches need a text channel that can hold threads.")
        starter = await channel.send(
            fit_content(
                f"📦 Batch by <@{plan.owner_id}>: {len(plan.items):,} images. Progress and results in the thread."
            ),
            allowed_mentions=discord.AllowedMentions.none(),
        )
        return await starter.create_thread(name=fit_thread_name(plan.name))


async def setup(bot: commands.Bot) -> None:
    """Load the cog (the extension entry point); the bot must carry a `runtime`."""
    services = getattr(bot, "services")  # noqa: B009 - PeelBot's attribute, without importing PeelBot (a cycle)
    bot.add_dynamic_items(BatchButton)
    await bot.add_cog(BatchCog(bot, services.batches, services.gallery))
