"""`/batch` as a service, without Discord: intake, the plan shown before Start, limits, start, progress and ZIP.

`python -m bot batch` runs the same flow (its own idempotency key and limits, no thread), so both write the same
plan note and the same manifest.

The ZIP comes from an attachment or a URL; the plan (`bot.app.batchplan`) says what Start would queue, what was
skipped, and the estimated cost and time. It waits in the store until Start or Cancel, so the summary's buttons
still work after a restart and nothing is queued before Start. Starting submits one BATCH job whose idempotency key
is the plan id: a second click (or a redelivered interaction) never queues twice.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from bot.app.batchplan import (
    NOTE_PLAN,
    NOTE_PROGRESS_GONE,
    NOTE_SAMPLES,
    NOTE_SKIPPED,
    NOTE_SUMMARY_FOR,
    NOTE_ZIP,
    SAMPLES,
    BatchError,
    BatchPlan,
    BatchRequest,
    BatchSnapshot,
    PendingPlans,
    PlannedItem,
    estimate_plan,
    made_cost,
    snapshot_of,
)
from bot.app.budgets import BUDGET_TITLE, BudgetError, BudgetService, plan_cost
from bot.app.downloads import ZipDownload, build_zip, copy_out
from bot.app.references import link_downloads
from bot.app.runtime import Runtime
from bot.core.admission import REFUSAL_TITLE
from bot.core.batch import BatchEstimate, BatchLimits, BatchLoad, Speed, default_speed, limit_refusal
from bot.core.budget_text import plan_budget_line
from bot.core.budgets import Refused
from bot.core.deployment import relax_available
from bot.core.manifest import ManifestHeader, ManifestRow, batch_rows
from bot.core.models import (
    Group,
    GroupId,
    Item,
    ItemInputs,
    ItemStatus,
    Job,
    JobId,
    JobKind,
    JobParams,
    JobRequest,
    JobStatus,
    NewItem,
    UserId,
)
from bot.core.outage import Outage
from bot.core.params import ParsedPrompt, parse_prompt, repeat_seeds, resolve_model
from bot.core.permute import PermutationError, count, expand
from bot.core.prompt_table import (
    BAD_VALUE,
    ItemPrompt,
    PromptPlan,
    RowProblem,
    TableError,
    assign_prompts,
    fill,
    is_template,
    parse_table,
    table_name,
)
from bot.core.relax import RelaxStatus
from bot.core.render import budget_paused_line, code
from bot.dispatch import CancelResult, SubmitResult, Subscription
from bot.ledger import NOTE_HOLD_FROM
from bot.ledger.errors import BudgetRefusedError
from bot.ledger.store import new_id
from bot.net.urlfetch import FetchError, FetchRefusedError, UrlPolicy, parse_networks
from storage.errors import ObjectNotFoundError
from storage.intake import (
    AcceptedImage,
    IntakeLimits,
    IntakeRefusedError,
    IntakeReport,
    IntakeSettings,
    UploadIntake,
)
from worker.contract import ErrorCode, model_spec

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class BatchService:
    """What `/batch` does, over the runtime's store, ledger and dispatcher."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        intake_limits: IntakeLimits | None = None,
        limits: BatchLimits | None = None,
        budgets: BudgetService | None = None,
    ) -> None:
        """Build the service; `intake_limits` unset: the `STORAGE_INTAKE_*` settings (defaults where unset).

        `budgets` checks a plan's cost against the money caps and role gates, and reserves it at Start (None: none).
        """
        self._rt = runtime
        self._budgets = budgets
        self._limits = limits
        self._plans = PendingPlans(runtime.backends.store, ttl_s=runtime.settings.batch_plan_ttl_s)
        self._intake = UploadIntake(
            runtime.backends.store,
            limits=intake_limits or IntakeSettings().limits(),  # STORAGE_INTAKE_* (no file read: see settings)
            max_parallel_checks=runtime.settings.intake_parallel_checks,
        )
        s = runtime.settings
        self._downloads = link_downloads(s, max_bytes=s.batch_fetch_max_bytes)
        allowed = parse_networks(s.batch_fetch_allowed_networks)
        self._url_policy = UrlPolicy(allowed)
        # An attachment's URL is Discord's CDN, from Discord's own interaction data; the playground serves it on
        # loopback, which only the playground's attachments may use.
        loopback = parse_networks(["127.0.0.0/8", "::1/128"]) if s.uses_playground else ()
        self._attachment_policy = UrlPolicy((*allowed, *loopback))

    @property
    def runtime(self) -> Runtime:
        """The runtime this service works on."""
        return self._rt

    @property
    def limits(self) -> BatchLimits:
        """The batch caps (from settings unless the service was given its own)."""
        if self._limits is not None:
            return self._limits
        s = self._rt.settings
        return BatchLimits(
            max_items=s.batch_max_items,
            max_running_per_user=s.batch_max_running_per_user,
            max_running_per_guild=s.batch_max_running_per_guild,
            max_items_per_guild=s.batch_max_items_per_guild,
        )

    # ---- planning ------------------------------------------------------------------------------------------

    async def plan_from_url(self, url: str, request: BatchRequest) -> BatchPlan:
        """Download a ZIP from a user's URL (address policy, size cap, download limits) and plan it.

        Raises:
            BatchError: the download or the ZIP was refused (the reason is in the message).
        """
        return await self._plan_download(url, request, self._url_policy, source=url.rsplit("/", 1)[-1])

    async def plan_from_attachment(self, url: str, request: BatchRequest, *, source: str, size: int) -> BatchPlan:
        """Stream a Discord attachment to disk (never whole in memory), under the same limits as a URL, and plan it.

        Raises:
            BatchError: the attachment is too large, the download was refused, or the ZIP was refused.
        """
        if size > self._downloads.options.max_bytes:
            raise BatchError("The attachment is larger than the batch size limit.")
        return await self._plan_download(url, request, self._attachment_policy, source=source)

    async def _plan_download(self, url: str, request: BatchRequest, policy: UrlPolicy, *, source: str) -> BatchPlan:
        try:
            async with self._downloads.fetch(url, user_id=request.owner_id, policy=policy, name="batch.zip") as got:
                return await self.plan_from_file(got.path, request, source=source or "download.zip")
        except FetchRefusedError as exc:
            raise BatchError(exc.user_message, title="Download not started") from exc
        except FetchError as exc:
            raise BatchError(f"Couldn't download the ZIP: {exc.user_message}") from exc

    async def plan_from_file(
        self,
        path: Path,
        request: BatchRequest,
        *,
        source: str,
        on_intake: Callable[[IntakeReport], None] | None = None,
    ) -> BatchPlan:
        """Take in the ZIP at `path`, check the limits and store the plan (nothing is queued).

        Args:
            path: the ZIP.
            request: who asks, with what prompt and options.
            source: the ZIP's name, as the plan shows it.
            on_intake: called with the intake's report before it is checked (the CLI lists what was skipped).

        Raises:
            BatchError: the prompt has errors, the ZIP was refused, its prompt table cannot be read, nothing in it
                can be made, or a limit is exceeded.
        """
        variants = await self._variants(request)
        shared = await self._take_refs(request.refs)
        try:
            report = await self._intake.zip_file(path)
        except IntakeRefusedError as exc:
            raise BatchError(f"The ZIP was refused ({exc.reason.value}): {exc.user_message}.") from exc
        if on_intake is not None:
            on_intake(report)
        # Deciding 10,000 items' prompts and options is ~0.5 s of pure Python: in a thread, so the loop keeps
        # answering interactions meanwhile (it gets the GIL back every switch interval, 5 ms), where on the loop it
        # held every user's acknowledgement for that long (bench/interactive_latency.py).
        plan = await asyncio.to_thread(self._plan_of, report, request, variants, shared, source)
        del report  # a 10,000-entry report is not held while the plan is checked and stored
        await self.check_limits(plan, is_admin=request.is_admin, role_ids=request.role_ids)
        await self._plans.put(plan)
        log.info(
            "batch plan %s: %d images, %d skipped",
            plan.id,
            len(plan.items),
            len(plan.skipped),
            extra={"action": "plan", "plan_id": plan.id},
        )
        return plan

    def _plan_of(
        self,
        report: IntakeReport,
        request: BatchRequest,
        variants: list[tuple[ParsedPrompt, JobParams]],
        shared: tuple[tuple[str, str], ...],
        source: str,
    ) -> BatchPlan:
        """Return the plan of a ZIP's intake report: each item's prompt, options and images (pure, no I/O).

        Raises:
            BatchError: the prompt table cannot be read, nothing in it can be made, or it makes too many images.
        """
        parsed, params = variants[0]
        keys = {image.name: image.key for image in report.accepted}
        plans = [self._prompts(report, p, params.model) for p, _ in variants]
        prompts = plans[0]
        # With no command prompt every item carries its own; the job (its thread, progress and summary) is named
        # after the ZIP, not after where the prompts came from (the plan says that).
        label = _unescaped(parsed.model_prompt()) if parsed.text else source
        items, problems, expanded = self._expanded(variants, plans, [a.name for a in report.accepted], request)
        typed = " ".join(request.prompt.split())
        display = typed if len(variants) > 1 else parsed.display() if parsed.text else ""
        plan = BatchPlan(
            id=new_id("p"),
            owner_id=request.owner_id,
            guild_id=request.guild_id,
            channel_id=request.channel_id,
            prompt=label,
            display_prompt=display if parsed.text else f"{label} {parsed.display()}".strip(),
            params=params,
            items=tuple(_planned(item, keys, label) for item in items),
            skipped=(
                *((e.name, e.reason.value) for e in report.skipped),
                *((p.where(prompts.table), p.code) for p in problems),
            ),
            notes=tuple(dict.fromkeys(n for p, _ in variants for n in p.notes)),
            source=source,
            idempotency_key=request.idempotency_key,
            prompt_source=_source_line(prompts.source, variants, expanded=expanded, repeat=request.options.repeat),
            problems=tuple((p.where(prompts.table), p.detail) for p in problems),
            shared_refs=shared,
        )
        check_input_images(plan)
        return plan  # a 10,000-row table's rows and prompts are not held while the plan is stored

    async def _take_refs(self, refs: Sequence[tuple[str, bytes]]) -> tuple[tuple[str, str], ...]:
        """Check and store the shared reference images through the intake (never trusted as they come).

        Raises:
            BatchError: too many, or one that is not an acceptable image (its name and why).
        """
        if len(refs) > MAX_SHARED_REFS:
            raise BatchError(f"Give at most {MAX_SHARED_REFS} shared reference images; {len(refs)} given.")
        taken: list[tuple[str, str]] = []
        for name, data in refs:
            image = await self._intake.image(data, name=name)
            if not isinstance(image, AcceptedImage):
                raise BatchError(f"{code(name)} can't be used as a reference: {image.message}.")
            taken.append((name, image.key))
        return tuple(taken)

    async def _variants(self, request: BatchRequest) -> list[tuple[ParsedPrompt, JobParams]]:
        """Return the command's prompt once per `{a, b}` permutation, each parsed, with its job parameters.

        The permutations are expanded before parsing, so `--ar {1:1, 16:9}` works; escapes stay escaped until each
        item's own prompt (a row's or caption's filled in) is expanded in turn (`_expanded`).

        Raises:
            BatchError: too many permutations, a parameter is wrong, or the permutations ask for different models.
        """
        try:
            texts = expand(request.prompt, cap=self._rt.settings.max_prompts_per_request, keep_escapes=True)
        except PermutationError as exc:
            raise BatchError(f"Fix the prompt first: {exc}.", title="Invalid prompt") from exc
        parsed = [parse_prompt(t) for t in texts]
        # The ZIP may carry the prompts, so an empty command prompt is no error here.
        errors = [e for p in parsed for e in p.errors if not e.startswith(_EMPTY_PROMPT)]
        if errors:
            raise BatchError("Fix the prompt first: " + "; ".join(dict.fromkeys(errors)) + ".", title="Invalid prompt")
        variants = [(p, await self._params(request, p)) for p in parsed]
        models = sorted({params.model for _, params in variants})
        if len(models) > 1:
            raise BatchError(
                f"A batch runs on one model; the permutations ask for {', '.join(models)}. Run one batch per model.",
                title="Invalid prompt",
            )
        return variants

    def _expanded(
        self,
        variants: Sequence[tuple[ParsedPrompt, JobParams]],
        plans: Sequence[PromptPlan],
        images: Sequence[str],
        request: BatchRequest,
    ) -> tuple[list[ItemPrompt], list[RowProblem], bool]:
        """Return every item: each image's (or text row's) prompt per command permutation, expanded, repeated.

        Items stay in ZIP order (then text rows); an image's items follow each other: command permutation, then
        its own prompt's permutations, then repeats. Also returns the row problems (once each, in line order) and
        whether any item's own prompt held permutations.

        Raises:
            BatchError: the items would be more than a batch may hold (counted before they are made).
        """
        cap = self._rt.settings.max_prompts_per_request
        job = variants[0][1]
        position = {name: i for i, name in enumerate(images)}
        problems: dict[RowProblem, None] = dict.fromkeys(p for plan in plans for p in plan.problems)
        chosen: list[tuple[tuple[int, int, int], ItemPrompt, int]] = []
        total, expanded = 0, False
        for v, ((parsed, params), plan) in enumerate(zip(variants, plans, strict=True)):
            repeat = request.options.repeat or parsed.params.repeat or 1
            for item in plan.items:
                try:
                    n = count(item.text)
                except PermutationError as exc:
                    problems[RowProblem(line=item.line, file=item.image or "", code=BAD_VALUE, detail=str(exc))] = None
                    continue
                if n > cap:
                    detail = f"the {{…}} permutations make {n:,} prompts; at most {cap:,} per prompt"
                    problems[RowProblem(line=item.line, file=item.image or "", code=BAD_VALUE, detail=detail)] = None
                    continue
                expanded |= n > 1
                total += n * repeat
                order = (position[item.image] if item.image else len(images), item.line or 0, v)
                chosen.append((order, _with_options(item, params, job), repeat))
        ceiling = self.limits.max_items_per_guild
        if total > ceiling:  # refused before millions of items are made in memory
            refusal = limit_refusal(
                self.limits,
                BatchLoad(user_running=0, guild_running=0, guild_items=0),
                items=total,
                is_admin=request.is_admin,
            )
            raise BatchError(refusal or f"This batch makes {total:,} images.", title="Batch limit reached")
        chosen.sort(key=lambda c: c[0])
        items = [
            replace(item, text=text, seed=seed)
            for _, item, repeat in chosen
            for text in expand(item.text, cap=cap)
            for seed in repeat_seeds(item.seed, repeat)
        ]
        return items, sorted(problems, key=lambda p: (p.line is None, p.line or 0)), expanded

    def _prompts(self, report: IntakeReport, parsed: ParsedPrompt, model: str) -> PromptPlan:
        """Decide each item's prompt from the ZIP's table, its captions and the command's prompt.

        Raises:
            BatchError: the table cannot be read, nothing gives a prompt, or no item is left.
        """
        tables = [t for t in report.texts if table_name(t.name)]
        if len(tables) > 1:
            raise BatchError("The ZIP holds both prompts.csv and prompts.jsonl: keep one of them.")
        try:
            table = parse_table(tables[0].name, tables[0].text) if tables else None
        except TableError as exc:
            raise BatchError(f"{exc}.", title="Can't read the prompts") from exc
        captions = {t.name: t.text for t in report.texts if not table_name(t.name)}
        if not parsed.text and table is None and not captions:
            raise BatchError("Fix the prompt first: the prompt is empty, and the ZIP has no prompts.csv or captions.")
        prompts = assign_prompts(
            command=parsed, model=model, images=[a.name for a in report.accepted], table=table, captions=captions
        )
        if not prompts.items:
            if not report.accepted and table is None:
                raise BatchError(self._nothing_accepted(report))
            first = "; ".join(f"{p.where(prompts.table)}: {p.detail}" for p in prompts.problems[:3])
            raise BatchError(
                "Nothing to make: no image or row has a usable prompt" + (f" ({first})." if first else ".")
            )
        return prompts

    @staticmethod
    def _nothing_accepted(report: IntakeReport) -> str:
        counts = ", ".join(f"{n} {reason.value.replace('_', ' ')}" for reason, n in report.skip_counts().items())
        return "The ZIP holds no usable image" + (f" (skipped: {counts})." if counts else ".")

    async def _params(self, request: BatchRequest, parsed: ParsedPrompt) -> JobParams:
        prefs = await self._rt.ledger.get_preferences(UserId(request.owner_id))
        options, inline = request.options, parsed.params
        chosen_model = options.model or inline.model or _str(prefs.get("model")) or self._rt.settings.gemini_model
        resolved = resolve_model(chosen_model)
        if resolved is None:
            raise BatchError(f"{code(chosen_model)} is not a Gemini image model Peel knows.", title="Invalid model")
        relax = options.relax if options.relax is not None else self.default_relax(request.guild_id)
        self._check_relax(relax)
        return JobParams(
            model=resolved,
            aspect_ratio=options.aspect_ratio or inline.aspect_ratio or _str(prefs.get("aspect_ratio")),
            image_size=options.image_size or inline.image_size or _str(prefs.get("image_size")),
            seed=options.seed if options.seed is not None else inline.seed,
            relax=relax,
        )

    def relax_available(self) -> bool:
        """Tell whether relax batches can run here (`bot.core.deployment.relax_available`)."""
        return relax_available(self._rt.settings.deployment_facts())

    def _check_relax(self, relax: bool) -> None:
        """Refuse relax where it cannot run: the bot has no Gemini key of its own beside a RunPod endpoint."""
        if relax and not self.relax_available():
            raise BatchError(
                "Relax mode isn't set up on this bot (it needs the bot's own Gemini key); run it fast with "
                "`speed:fast`, and an admin can run `python -m bot doctor` to see the fix.",
                title="Relax unavailable",
            )

    def default_relax(self, guild_id: int | None) -> bool:
        """Tell whether a batch in `guild_id` runs in relax when no speed was chosen.

        `RELAX_GUILDS` name the servers that default to relax; elsewhere (and in the CLI) `BATCH_DEFAULT_SPEED`.
        """
        s = self._rt.settings
        return default_speed(guild_id, default=s.batch_default_speed, relax_guilds=s.relax_guilds) is Speed.RELAX

    def estimate(self, plan: BatchPlan) -> BatchEstimate:
        """Estimate the plan's cost (price table times images) and time (latency over the Gemini budget)."""
        s = self._rt.settings
        estimate = estimate_plan(plan, latency_s=s.expected_latency_s, concurrency=s.gemini_concurrency)
        if not plan.relax and not self.relax_available():
            # No relax offer where relax cannot run (the bot has no Gemini key of its own beside RunPod).
            return replace(estimate, other_unit_price_usd=None)
        return estimate

    async def get_plan(self, plan_id: str) -> BatchPlan | None:
        """Return a pending plan, or None when it was started, cancelled, has expired or never existed.

        A plan older than `batch_plan_ttl_s` is expired: it is forgotten here, so Start cannot queue what the
        user saw priced and limited a day ago.
        """
        return await self._plans.get(plan_id)

    async def sweep_plans(self, *, now: datetime | None = None) -> int:
        """Forget every pending plan that has expired; return how many."""
        return await self._plans.sweep(now=now)

    async def discard_plan(self, plan_id: str) -> None:
        """Forget a pending plan (Cancel, or once started)."""
        await self._plans.discard(plan_id)

    # ---- limits and starting ---------------------------------------------------------------------------------

    async def load(self, *, owner_id: int, guild_id: int | None) -> BatchLoad:
        """Count the unfinished batches of a user and of a guild, and the guild's images still to make."""
        batches = [j for j in await self._rt.ledger.unfinished_jobs() if j.kind is JobKind.BATCH]
        guild = [j for j in batches if j.guild_id == guild_id]
        return BatchLoad(
            user_running=sum(1 for j in batches if j.owner_id == owner_id),
            guild_running=len(guild),
            guild_items=sum(j.remaining for j in guild),
        )

    async def check_limits(
        self, plan: BatchPlan, *, is_admin: bool, role_ids: Collection[int] = (), caps: bool = True
    ) -> None:
        """Refuse a plan that would exceed a cap now: batch counts, role gates, then (`caps`) money caps.

        A plan is checked when it is made and again at Start (spend and other jobs' reservations change in
        between); `caps=False` checks only the counts and gates.

        Raises:
            BatchError: naming the limit and by how much (a money cap: its spend so far, the plan's cost and when
                it resets).
        """
        load = await self.load(owner_id=plan.owner_id, guild_id=plan.guild_id)
        refusal = limit_refusal(self.limits, load, items=len(plan.items), is_admin=is_admin)
        if refusal is not None:
            raise BatchError(refusal, title="Batch limit reached")
        if self._budgets is not None:
            try:
                await self._budgets.check_plan(
                    owner_id=plan.owner_id,
                    guild_id=plan.guild_id,
                    role_ids=role_ids,
                    is_admin=is_admin,
                    cost=plan_cost(plan),
                    model=plan.params.model,
                    image_sizes={item.image_size or plan.params.image_size for item in plan.items},
                    items=len(plan.items),
                    batch=True,
                    caps=caps,
                )
            except BudgetError as exc:
                raise BatchError(exc.user_message, title=exc.title) from exc

    async def budget_line(self, plan: BatchPlan, *, is_admin: bool, role_ids: Collection[int] = ()) -> str | None:
        """Return the plan's cost against what the tightest money cap leaves its owner now (None: no cap applies)."""
        if self._budgets is None:
            return None
        room = await self._budgets.room_for(
            owner_id=plan.owner_id, guild_id=plan.guild_id, role_ids=role_ids, is_admin=is_admin
        )
        return plan_budget_line(plan_cost(plan), room)

    async def started_job(self, key: str) -> Job | None:
        """Return the job a plan was started as (by its plan id or idempotency key), if it was."""
        return await self._rt.ledger.find_job(key)

    async def start(
        self,
        plan: BatchPlan,
        *,
        group_id: GroupId | None,
        is_admin: bool,
        trial: int | None = None,
        role_ids: frozenset[int] = frozenset(),
    ) -> SubmitResult:
        """Queue the plan as one BATCH job in `group_id` (idempotent: `plan.key` is the key) and forget the plan.

        With `trial` ("Try on N"), only the first `trial` items run: the job pauses itself once they are made or
        failed, its samples are shown, and `resume` ("Start the rest") makes the others. The trial's images are
        part of the batch, never made again.

        Raises:
            BatchError: a limit is now exceeded, or the dispatcher refused the job.
        """
        if await self.started_job(plan.key) is None:
            await self.check_limits(plan, is_admin=is_admin, role_ids=role_ids)
        # With the job: a crash cannot leave a batch without its plan, nor a trial without its hold.
        notes: dict[str, object] = {NOTE_PLAN: plan.note_json()}
        if trial is not None and 0 < trial < len(plan.items):
            notes[NOTE_HOLD_FROM] = trial
        if plan.retry_of is not None:
            notes[NOTE_RETRY_OF] = plan.retry_of
        shared = tuple(key for _, key in plan.shared_refs)
        request = JobRequest(
            kind=JobKind.BATCH,
            owner_id=UserId(plan.owner_id),
            prompt=plan.prompt,
            params=plan.params,
            items=tuple(_new_item(i, shared) for i in plan.items),
            guild_id=plan.guild_id,
            group_id=group_id,
            idempotency_key=plan.key,
            is_admin=is_admin,
            notes=notes,
            role_ids=role_ids,
        )
        if self._budgets is not None:  # the whole plan is reserved with the job, a trial's held items included
            try:
                request = await self._budgets.hold_for(request)
            except BudgetError as exc:
                raise BatchError(exc.user_message, title=exc.title) from exc
        result = await self._rt.dispatcher.submit(request)
        if result.job is None:
            raise BatchError(result.message, title=BUDGET_TITLE if result.budget is not None else REFUSAL_TITLE)
        await self.discard_plan(plan.id)
        return result

    async def open_group(self, plan: BatchPlan, *, channel_id: int | None, thread_id: int) -> Group:
        """Return the group of the thread a plan runs in (created for the plan's owner: the bot opened it for them)."""
        return await self._rt.ledger.ensure_group(
            name=plan.name,
            now=datetime.now(UTC),
            guild_id=plan.guild_id,
            channel_id=channel_id,
            thread_id=thread_id,
            owner_id=plan.owner_id,
        )

    # ---- while it runs ---------------------------------------------------------------------------------------

    def events(self) -> Subscription:
        """Subscribe to the dispatcher's job events (close the subscription to stop)."""
        return self._rt.dispatcher.subscribe()

    async def job(self, job_id: JobId) -> Job | None:
        """Return a batch's job, or None when Peel does not know it."""
        return await self._rt.ledger.get_job(job_id)

    async def unfinished(self) -> list[Job]:
        """Return every batch not final yet (what a restart picks up again)."""
        return [j for j in await self._rt.ledger.unfinished_jobs() if j.kind is JobKind.BATCH]

    async def group_of(self, job: Job) -> Group | None:
        """Return the group (thread) a batch runs in."""
        return await self._rt.ledger.get_group(job.group_id) if job.group_id is not None else None

    async def pause(self, job_id: JobId) -> Job:
        """Pause a batch: no new image starts; those being made now finish and are kept ("pausing" until then)."""
        return await self._rt.dispatcher.pause(job_id)

    async def resume(self, job_id: JobId, *, rest: bool = False) -> Job:
        """Resume a paused batch; a trial's held items run only with `rest` ("Start the rest"), not on Resume."""
        return await self._rt.dispatcher.resume(job_id, release_hold=rest)

    async def cancel(self, job_id: JobId, by: UserId, *, is_admin: bool) -> CancelResult:
        """Cancel a batch for its owner (or an admin)."""
        return await self._rt.dispatcher.cancel(job_id, by, is_admin=is_admin)

    async def message_of(self, job_id: JobId, role: str) -> tuple[int, int] | None:
        """Return (channel id, message id) of a batch's message in `role` (`STATUS` or `SUMMARY`)."""
        return await self._rt.ledger.job_message(job_id, role)

    async def record_message(self, job_id: JobId, role: str, *, channel_id: int, message_id: int) -> None:
        """Remember a batch's message in `role`, so a restart edits it again."""
        await self._rt.ledger.set_job_message(
            job_id, role, channel_id=channel_id, message_id=message_id, now=datetime.now(UTC)
        )

    async def progress_gone(self, job_id: JobId) -> object:
        """Return the Discord error code that ended a batch's progress message, or None while it is shown."""
        return await self._rt.ledger.note(job_id, NOTE_PROGRESS_GONE)

    async def mark_progress_gone(self, job_id: JobId, code: int) -> None:
        """Remember that Discord refused a batch's progress message (with `code`): it is never edited again."""
        await self._rt.ledger.set_note(job_id, NOTE_PROGRESS_GONE, code)

    async def summary_posted_for(self, job_id: JobId) -> object:
        """Return the run (its end time) the batch's last summary described, or None."""
        return await self._rt.ledger.note(job_id, NOTE_SUMMARY_FOR)

    async def mark_summary_posted(self, job_id: JobId, run: str) -> None:
        """Remember that the summary of `run` was posted, so a restart does not post it again."""
        await self._rt.ledger.set_note(job_id, NOTE_SUMMARY_FOR, run)

    async def take_samples(self, job: Job) -> list[tuple[str, bytes]] | None:
        """Return the first results of a running batch, once: (source name, image) of its first `SAMPLES` made.

        None until that many are made (or when they were already taken). The note is set before the images are
        shown, so a thread that cannot take them is not asked again at every refresh.
        """
        trial = await self.trial_of(job)
        if trial is not None:  # shown once the trial is over (it paused itself, nothing of it still out), all of it
            wanted = trial
            if job.status is not JobStatus.PAUSED or await self._rt.dispatcher.pausing(job.id):
                return None
            # Paused by its owner in the middle of the trial: Resume goes on with the trial, shown when it is over.
            if not all(i.status.is_final for i in await self._rt.ledger.items(job.id, limit=trial)):
                return None
        else:
            wanted = min(SAMPLES, job.total)
            if job.status.is_final or job.ok < wanted:
                return None
        if await self._rt.ledger.note(job.id, NOTE_SAMPLES):
            return None
        await self._rt.ledger.set_note(job.id, NOTE_SAMPLES, True)
        return await self.first_made(job, wanted)

    async def first_made(self, job: Job, wanted: int) -> list[tuple[str, bytes]]:
        """Return (source name, image) of a batch's first `wanted` items made, in item order."""
        store = self._rt.backends.store
        samples = []
        for item in await self._rt.ledger.items(job.id, statuses=(ItemStatus.OK,), limit=wanted):
            try:
                data = await store.get_bytes(item.output_key)
            except ObjectNotFoundError:  # a store emptied behind the ledger's back: show the others
                continue
            samples.append((item.inputs.source_name or f"#{item.index + 1}", data))
        return samples

    async def trial_of(self, job: Job) -> int | None:
        """Return N of a batch started with "Try on N" while its other items wait for "Start the rest", else None."""
        held = await self._rt.ledger.note(job.id, NOTE_HOLD_FROM)
        return held if isinstance(held, int) else None

    async def trial_over(self, job: Job) -> int | None:
        """Return N when a batch's "Try on N" has run and holds (paused, nothing of it still out), else None."""
        trial = await self.trial_of(job)
        if trial is None or job.status is not JobStatus.PAUSED or await self._rt.dispatcher.pausing(job.id):
            return None
        return trial

    async def rest_cost(self, job: Job, trial: int) -> float:
        """Return what "Start the rest" of a trial would cost: the items held back, each at its own image size."""
        held = await self._rt.ledger.count_by_size(job.id, status=ItemStatus.PENDING.value, from_index=trial)
        return made_cost(job.params, held)

    async def snapshot(self, job_id: JobId) -> BatchSnapshot | None:
        """Return a batch's counts now (blocked = safety blocks, failed = other failures)."""
        job = await self._rt.ledger.get_job(job_id)
        if job is None:
            return None
        errors = await self._rt.ledger.error_counts(job_id)
        retrying = {} if job.status.is_final else await self._rt.ledger.retrying_counts(job_id)
        out = await self._rt.dispatcher.pausing(job_id) if job.status is JobStatus.PAUSED else 0
        # The cost is what was recorded (actual), plus the estimate of made items that have none recorded.
        recorded = await self._rt.ledger.job_cost(job_id)
        ledger = self._rt.ledger
        made = await (ledger.made_by_size(job_id) if recorded is None else ledger.unpriced_made_by_size(job_id))
        trial = await self.trial_of(job) if job.status is JobStatus.PAUSED else None
        relax = await self.relax_status(job_id) if job.params.relax and not job.status.is_final else None
        # A paused batch that could not afford its next image says which cap holds it (the dispatcher paused it
        # there, or a pause of its owner's would meet it on Resume), read again now so a restart keeps it.
        refused = await self._rt.dispatcher.budget_refusal(job) if job.status is JobStatus.PAUSED else None
        return snapshot_of(
            job,
            errors=errors,
            retrying=retrying,
            chunks_out=out,
            made_by_size=made,
            trial=trial,
            relax=relax,
            recorded_usd=recorded,
            budget_line=None if refused is None else self.budget_paused_text(refused),
        )

    def budget_paused_text(self, refused: Refused) -> str:
        """Return what a batch paused at a money cap says: which cap, what counts, its reset in the budget zone."""
        tz = self._budgets.tz if self._budgets is not None else ZoneInfo(self._rt.settings.budget_timezone)
        return budget_paused_line(refused, tz)

    async def job_cost(self, job_id: JobId) -> float | None:
        """Return what a batch was recorded to have cost in USD (Gemini's reported usage priced, RunPod time).

        None when nothing was recorded (no answer came, or every item was made by a worker older than `usage`).
        """
        return await self._rt.ledger.job_cost(job_id)

    async def relax_status(self, job_id: JobId) -> RelaxStatus | None:
        """Return where a relax batch's open parts are (None for a fast batch, or one with no part open)."""
        return await self._rt.dispatcher.relax_status(job_id)

    def outage(self) -> Outage | None:
        """The outage (RunPod's or Gemini's) every running batch is delayed by now, if there is one."""
        return self._rt.dispatcher.outage

    async def plan_of(self, job_id: JobId) -> BatchPlan | None:
        """Return the plan a batch was started from, without its items (they are the job's items in the ledger)."""
        data = await self._rt.ledger.note(job_id, NOTE_PLAN)
        return BatchPlan.from_json(data) if isinstance(data, dict) else None

    # ---- when it ends ----------------------------------------------------------------------------------------

    async def rows(self, job: Job) -> AsyncIterator[ManifestRow]:
        """Yield the manifest rows of a batch, streamed from the ledger: every item, then every entry intake skipped."""
        plan = await self.plan_of(job.id)
        skipped: tuple[tuple[str, str], ...] = plan.skipped if plan else ()
        if plan is None:  # a CLI batch started before the CLI shared this flow
            legacy = await self._rt.ledger.note(job.id, NOTE_SKIPPED)
            skipped = tuple((str(n), str(r)) for n, r in legacy) if isinstance(legacy, list) else ()
        details = dict(plan.problems) if plan else {}
        del plan  # its items (a prompt each, 10,000 of them) are not held while the rows stream
        async for row in batch_rows(job, self._rt.ledger.iter_items(job.id), skipped, details):
            yield row

    async def build_download(self, job: Job) -> ZipDownload:
        """Write the batch's ZIP (outputs + manifests) and return its link; the archive is remembered for New link.

        The link is `Runtime.lasting_link`'s: posted in the batch's summary, it works for as long as the ZIP is kept.
        """
        rows = self.rows(job)
        header = ManifestHeader(job_id=job.id, prompt=job.prompt, model=job.params.model, created_at=job.created_at)
        store = self._rt.backends.store
        name = f"batch-{job.ok}of{job.total}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}"
        download = await build_zip(
            store,
            store,
            header=header,
            rows=rows,
            name=name,
            filename=f"peel-{job.id}.zip",
            expires_s=self._rt.settings.link_expiry_s,
            signer=self._rt.signer,
        )
        await self._rt.ledger.set_note(job.id, NOTE_ZIP, {"key": download.key, "filename": download.filename})
        return replace(download, url=await self._rt.lasting_link(download.key, filename=download.filename))

    async def save_zip(self, job: Job, dest: Path) -> ZipDownload:
        """Write the batch's ZIP (as `build_download` does) and copy it to the local file `dest`."""
        download = await self.build_download(job)
        await copy_out(self._rt.backends.store, download.key, dest)
        return download

    async def fresh_link(self, job: Job) -> str:
        """Return a new link to the batch's latest ZIP, rebuilding the ZIP when it is gone."""
        note = await self._rt.ledger.note(job.id, NOTE_ZIP)
        if isinstance(note, dict) and await self._rt.backends.store.exists(str(note["key"])):
            return await self._rt.lasting_link(str(note["key"]), filename=str(note["filename"]))
        return (await self.build_download(job)).url

    async def retry_failed(self, job_id: JobId) -> tuple[Job, int]:
        """Requeue the batch's failed items that can succeed on a retry; return the job and how many went back.

        Raises:
            BudgetError: the batch had ended and its retried items would take a money cap over.
        """
        before = await self._rt.ledger.get_job(job_id)
        try:
            job = await self._rt.dispatcher.retry_failed(job_id)
        except BudgetRefusedError as exc:  # an ended batch's retry must fit its money caps again
            raise BudgetError(exc.user_message, refused=exc.refused) from exc
        requeued = 0 if before is None else max(0, before.failed - job.failed)
        log.info("batch %s: %d failed items requeued", job_id, requeued, extra={"job_id": job_id, "action": "retry"})
        return job, requeued

    async def retry_prompt(self, job: Job) -> str:
        """Return the prompt "Retry failed, changed…" starts from: the batch's prompt as the user gave it."""
        plan = await self.plan_of(job.id)
        return plan.display_prompt if plan is not None else job.prompt

    async def plan_retry(
        self,
        job_id: JobId,
        *,
        prompt: str | None,
        model: str | None,
        channel_id: int,
        is_admin: bool,
        relax: bool | None = None,
        role_ids: frozenset[int] = frozenset(),
    ) -> BatchPlan:
        """Plan "Retry failed, changed…": copies of a batch's failed items as a new batch: new prompt, model or speed.

        The plan is started like any other (Start), in the same thread. The copies keep their source names, images,
        references, seeds and options. An edited `prompt` replaces the job's prompt and every item's own prompt
        (`{prompt}` `{name}` `{folder}` fill in the item's own, as a template does); its inline parameters override
        the batch's options. `model` (or the prompt's `--model`) replaces the model; `relax` the speed (None: the
        batch's). The original job is left as it is: its manifest still says failed. Every failed item is copied (a
        safety block may pass with another prompt) except `TOO_LARGE`, whose input no prompt shrinks; with only the
        speed changed, what "Retry failed" would not run again (`SAFETY`, `BAD_INPUT`) is not copied either.

        Raises:
            BatchError: no such batch, nothing changed, the prompt or model is invalid, no failed item to copy, or
                a limit is exceeded.
        """
        job = await self._rt.ledger.get_job(job_id)
        if job is None or job.kind is not JobKind.BATCH:
            raise BatchError("This batch no longer exists.")
        before = await self.retry_prompt(job)
        edited = prompt is not None and prompt.strip() != before.strip()
        parsed = parse_prompt(prompt.strip() if prompt is not None and edited else before)
        if edited and not parsed.ok:
            raise BatchError("Fix the prompt first: " + "; ".join(parsed.errors) + ".", title="Invalid prompt")
        chosen = (model or "").strip() or (parsed.params.model if edited else None) or job.params.model
        resolved = resolve_model(chosen)
        if resolved is None:
            raise BatchError(f"{code(chosen)} is not a Gemini image model Peel knows.", title="Invalid model")
        speed = job.params.relax if relax is None else relax
        self._check_relax(speed)
        if not edited and resolved == job.params.model and speed == job.params.relax:
            raise BatchError(
                "Nothing changed: edit the prompt or choose another model or speed, or use **Retry failed** to run "
                "the failed images again as they were.",
                title="Nothing to retry",
            )
        left_out = _NOT_COPIED if edited or resolved != job.params.model else _NOT_RERUN
        failed = [
            i
            for i in await self._rt.ledger.items(job_id, statuses=(ItemStatus.ERROR,))
            if (i.error_code or "") not in left_out
        ]
        if not failed:
            raise BatchError("Nothing to retry: no failed image that a changed prompt, model or speed can help.")
        params = replace(_retry_params(job.params, resolved, parsed if edited else None), relax=speed)
        job_prompt = parsed.model_prompt() if edited else job.prompt
        original = await self.plan_of(job_id)
        plan = BatchPlan(
            id=new_id("p"),
            owner_id=job.owner_id,
            guild_id=job.guild_id,
            channel_id=channel_id,
            prompt=job_prompt,
            display_prompt=parsed.display() if edited else before,
            params=params,
            items=tuple(_retry_item(i, job, parsed if edited else None) for i in failed),
            skipped=(),
            notes=(f"↩️ Retry of the {len(failed):,} failed image(s) of batch {job.id}, as a new batch",),
            prompt_source="the failed images of the batch"
            + (", new prompt" if edited else "")
            + (f", {Speed.RELAX if speed else Speed.FAST}" if speed != job.params.relax else ""),
            source=original.source if original is not None else "retry",
            retry_of=job.id,
        )
        check_input_images(plan)
        await self.check_limits(plan, is_admin=is_admin, role_ids=role_ids)
        await self._plans.put(plan)
        log.info(
            "batch retry plan %s: %d failed items of %s, model %s, prompt %s",
            plan.id,
            len(plan.items),
            job_id,
            resolved,
            "edited" if edited else "kept",
            extra={"action": "plan", "plan_id": plan.id, "job_id": job_id},
        )
        return plan


MAX_SHARED_REFS = 3  # shared references of a batch: a style or a logo, not a second input set
NOTE_RETRY_OF = "batch_retry_of"  # a "Retry failed, changed" batch: the job whose failed items it copies
_EMPTY_PROMPT = "the prompt is empty"  # `parse_prompt`'s error for a prompt with no text
# The failed items a changed retry leaves out: no prompt shrinks a TOO_LARGE input; and when only the speed changes,
# the ones "Retry failed" leaves too (`Ledger.retry_failed`): the same request is blocked or refused again.
_NOT_COPIED = frozenset({ErrorCode.TOO_LARGE.value})
_NOT_RERUN = frozenset({ErrorCode.TOO_LARGE.value, ErrorCode.SAFETY.value, ErrorCode.BAD_INPUT.value})


def check_input_images(plan: BatchPlan) -> None:
    """Refuse a plan whose item would send the model more images than it takes (its own, its row's, shared).

    Raises:
        BatchError: naming the model's limit and the first item over it.
    """
    spec = model_spec(plan.params.model)
    shared = len(plan.shared_refs)
    for item in plan.items:
        sent = len(item.input_keys) + shared
        if sent > spec.max_input_images:
            what = item.name or (f"line {item.line}" if item.line is not None else "an item")
            raise BatchError(
                f"{code(spec.name)} takes at most {spec.max_input_images} input images; {code(what)} would send "
                f"{sent} ({len(item.input_keys)} of its own, {shared} shared reference(s)). Give fewer references "
                "or choose a model that takes more.",
                title="Too many input images",
            )


def _retry_params(params: JobParams, model: str, edited: ParsedPrompt | None) -> JobParams:
    """Return the retry's options: the batch's, with the new model and the edited prompt's inline parameters."""
    inline = edited.params if edited is not None else None
    return JobParams(
        model=model,
        aspect_ratio=(inline.aspect_ratio if inline else None) or params.aspect_ratio,
        image_size=(inline.image_size if inline else None) or params.image_size,
        seed=inline.seed if inline is not None and inline.seed is not None else params.seed,
    )


def _retry_item(item: Item, job: Job, edited: ParsedPrompt | None) -> PlannedItem:
    """Return a copy of a failed item for its retry: its images, name, seed and options; its prompt as decided."""
    prompt: str | None = item.prompt
    if edited is not None:
        text = edited.model_prompt()
        if is_template(text):
            folder, _, leaf = (item.inputs.source_name or "").rpartition("/")
            stem = leaf.rsplit(".", 1)[0] if "." in leaf[1:] else leaf
            prompt = fill(text, prompt=item.prompt or job.prompt, name=stem, folder=folder)
        else:
            prompt = None  # the new job prompt
    keys = item.inputs.ref_keys
    return PlannedItem(
        key=keys[0] if keys else "",
        name=item.inputs.source_name or "",
        prompt=prompt,
        aspect_ratio=item.inputs.aspect_ratio,
        image_size=item.inputs.image_size,
        seed=item.seed,
        ref_keys=keys[1:],
    )


def _unescaped(text: str) -> str:
    r"""Return a text expanded with `keep_escapes` as the model gets it: `\{` written `{` (it holds no group)."""
    return expand(text, cap=1)[0]


def _own(mine: _T | None, permutation: _T | None, base: _T | None) -> _T | None:
    return mine if mine is not None else permutation if permutation != base else None


def _with_options(item: ItemPrompt, params: JobParams, job: JobParams) -> ItemPrompt:
    """Return the item with the options its command permutation sets apart from the job's (`--ar {1:1, 16:9}`).

    The item's own values (its row's) win: these fill only what the item leaves to the job.
    """
    return replace(
        item,
        aspect_ratio=_own(item.aspect_ratio, params.aspect_ratio, job.aspect_ratio),
        image_size=_own(item.image_size, params.image_size, job.image_size),
        seed=_own(item.seed, params.seed, job.seed),
    )


def _source_line(
    source: str, variants: Sequence[tuple[ParsedPrompt, JobParams]], *, expanded: bool, repeat: int | None
) -> str:
    """Return where the prompts come from, with what multiplies them: `one prompt × 3 permutations × 2 repeats`."""
    parts = [source]
    if len(variants) > 1:
        parts.append(f"{len(variants)} permutations")
    if expanded:
        parts.append("their own {…} permutations")
    repeats = {repeat or p.params.repeat or 1 for p, _ in variants}
    if repeats != {1}:
        parts.append(f"{repeats.pop()} repeats" if len(repeats) == 1 else "repeats")
    return " × ".join(parts)


def _planned(item: ItemPrompt, keys: Mapping[str, str], job_prompt: str) -> PlannedItem:
    """Return the plan's item for an item's prompt; only what differs from the job is kept."""
    model_prompt = item.model_prompt()
    own = model_prompt != job_prompt
    return PlannedItem(
        key=keys[item.image] if item.image else "",
        name=item.image or "",
        prompt=model_prompt if own else None,
        display=item.display() if own else None,
        aspect_ratio=item.aspect_ratio,
        image_size=item.image_size,
        seed=item.seed,
        ref_keys=tuple(keys[r] for r in item.refs),
        line=item.line,
    )


def _new_item(item: PlannedItem, shared: tuple[str, ...] = ()) -> NewItem:
    """Return the ledger's item for a planned one: its prompt, seed, images (the shared references last), options."""
    inputs = ItemInputs(
        ref_keys=item.input_keys + shared,
        source_name=item.name or None,
        aspect_ratio=item.aspect_ratio,
        image_size=item.image_size,
    )
    return NewItem(prompt=item.prompt, seed=item.seed, inputs=inputs)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


__all__ = ["MAX_SHARED_REFS", "NOTE_RETRY_OF", "BatchService", "check_input_images"]
