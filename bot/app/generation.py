"""Interactive generation without Discord: turn prompts, preferences and images into dispatcher requests.

The Discord layer (`bot.exts.imagine`) parses nothing and builds no request itself: it calls this service with
what the user typed, clicked or attached, and renders what comes back. Every refusal is a `GenerationError`
whose `user_message` names the problem (a parameter, a model's limit), so the shared error mapper shows it.

Single-image tools, as Midjourney users know them, on Gemini:

* upscale: the image as the reference at 2K/4K on a model that takes the size;
* vary (subtle/strong): the image as the reference with a wording that says how far to stray;
* zoom out / pan / Make Square / Custom Zoom: the image on a larger grey canvas (stored through the intake) and an
  instruction to fill it (Custom Zoom: with the edited prompt);
* Vary (Region): the image, the region and its prompt; the worker outlines, asks and composites (`worker.region`);
* reroll: the same prompt and references with new seeds;
* edit: an edit of the image, carrying the earlier instructions of its chain (a job note, `edit_history`).
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bot.app.budgets import BudgetError, BudgetService
from bot.app.generation_types import (
    CUSTOM_ZOOM_RANGE,
    FILL_WORDING,
    KEEP_FRAME_WORDING,
    MAX_REFERENCES,
    NOTE_DISPLAY,
    NOTE_EDIT_HISTORY,
    NOTE_LABEL,
    NOTE_REFERENCES,
    NOTE_SHOWN,
    UPSCALE_FALLBACK_MODEL,
    UPSCALE_WORDING,
    VARY_WORDING,
    ZOOM_FACTORS,
    GenerationError,
    ImaginePlan,
    Origin,
    Prepared,
    Shown,
    Submitted,
    UserPrefs,
    check_params,
    job_request,
    takes_size,
)
from bot.app.imaging import Direction, pan_canvas, region_picker_overlay, zoom_canvas, zoom_out_canvas
from bot.app.imaging import image_size as _image_size  # `image_size` is also a parameter name here
from bot.app.references import LinkError, ReferenceLinks
from bot.core.admission import REFUSAL_TITLE
from bot.core.models import (
    EditInput,
    Image,
    Item,
    ItemInputs,
    ItemStatus,
    Job,
    JobId,
    JobKind,
    JobParams,
    NewItem,
    UserId,
)
from bot.core.params import (
    GEMINI_ASPECT_RATIOS,
    ParsedPrompt,
    PromptParams,
    parse_prompt,
    repeat_seeds,
    resolve_model,
    snap_aspect_ratio,
)
from bot.core.permute import PermutationError, expand
from bot.core.prefer import personalize
from bot.core.references import RefParseError, RefRole, parse_labels, take_links, with_roles, without_roles
from bot.core.regions import Region, RegionError, parse_region, region_label
from bot.core.render import code, edit_display, job_note_lines
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from storage.base import Store
from storage.intake import AcceptedImage, UploadIntake
from worker.contract import model_spec

log = logging.getLogger(__name__)


class GenerationService:
    """Builds and submits interactive jobs; Discord-independent (unit-tested with the memory store)."""

    def __init__(
        self,
        ledger: Ledger,
        dispatcher: Dispatcher,
        store: Store,
        *,
        default_model: str,
        budgets: BudgetService | None = None,
        links: ReferenceLinks | None = None,
    ) -> None:
        """Build the service; `budgets` checks and reserves each request's cost (None: no budgets).

        `links` fetches the image links of prompts (`--sref`, `--cref`, `--oref`, bare links); None refuses them.
        """
        self._budgets = budgets
        self._links = links
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._store = store
        self._intake = UploadIntake(store)
        self._default_model = default_model

    @property
    def default_model(self) -> str:
        """The model used when neither the prompt nor the user's settings name one."""
        return self._default_model

    # ---- preferences -------------------------------------------------------------------------------------------

    async def preferences(self, user_id: UserId) -> UserPrefs:
        """Return a user's settings."""
        return UserPrefs.from_json(await self._ledger.get_preferences(user_id))

    async def set_preferences(self, user_id: UserId, prefs: UserPrefs) -> UserPrefs:
        """Store a user's settings, keeping keys other front ends wrote."""
        current = await self._ledger.get_preferences(user_id)
        await self._ledger.set_preferences(user_id, {**current, **prefs.to_json()}, now=datetime.now(UTC))
        return prefs

    # ---- inputs ------------------------------------------------------------------------------------------------

    async def take_references(self, files: Sequence[tuple[str, bytes]]) -> tuple[str, ...]:
        """Validate and store reference images (never trusted as they come); return their storage keys.

        Raises:
            GenerationError: too many images, or one that is not an acceptable image (its name and why).
        """
        if len(files) > MAX_REFERENCES:
            raise GenerationError(f"Attach at most {MAX_REFERENCES} reference images; {len(files)} given.")
        keys: list[str] = []
        for name, data in files:
            taken = await self._intake.image(data, name=name)
            if not isinstance(taken, AcceptedImage):
                raise GenerationError(f"{code(name)} can't be used as a reference: {taken.message}.")
            keys.append(taken.key)
        return tuple(keys)

    async def _fetch_link(self, url: str, origin: Origin) -> str:
        """Fetch an image link of a prompt by `/batch`'s URL rules and store it as a reference; return its key."""
        shown = code(url if len(url) <= 80 else url[:77] + "…")
        if self._links is None:
            raise GenerationError(f"{shown}: Peel doesn't fetch links here; attach the image instead.")
        try:
            data = await self._links.fetch(url, user_id=origin.user_id)
        except LinkError as exc:
            raise GenerationError(f"{shown} can't be used as a reference: {exc.user_message}.") from exc
        taken = await self._intake.image(data, name="link")
        if not isinstance(taken, AcceptedImage):
            raise GenerationError(f"{shown} can't be used as a reference: {taken.message}.")
        return taken.key

    # ---- requests ----------------------------------------------------------------------------------------------

    async def personalized(self, prompt: str, user_id: UserId) -> str:
        """Return a prompt as it runs for its user: their `/prefer option` sets expanded, their suffix added.

        Applied wherever a user's typed prompt is parsed (/imagine, the Remix box); idempotent, so a prompt that
        already went through it (a Remix of a shown prompt) is unchanged. Edit instructions and batch prompts are
        not prompts of this kind and go as given.
        """
        return personalize(prompt, await self._ledger.prompt_prefs(user_id))

    def parse(self, prompt: str) -> ParsedPrompt:
        """Parse a prompt's inline parameters, raising one error that names every bad parameter."""
        parsed = parse_prompt(prompt)
        if not parsed.ok:
            raise GenerationError("\n".join(f"• {e}" for e in parsed.errors), title="Invalid parameter")
        return parsed

    async def imagine(
        self,
        prompt: str,
        origin: Origin,
        *,
        ref_keys: Sequence[str] = (),
        model: str | None = None,
        aspect_ratio: str | None = None,
        image_size: str | None = None,
        kind: JobKind = JobKind.GRID,
        label: str = "",
        overrides: PromptParams | None = None,
        ref_names: Sequence[str] = (),
        ref_roles: Sequence[RefRole | None] = (),
    ) -> Prepared:
        """Build a grid job from a prompt, the command's options and the user's settings.

        Inline parameters win over the command's options, which win over the user's settings; `overrides` (the
        CLI's flags, already checked) win over them all. The user's suffix and option sets apply first. `ref_names`
        are the references' file names, which the job's message shows.
        `ref_roles` says what each reference is for (by position; `bot.core.references`), and the model prompt says
        so. Image links are fetched by `imagine_all`; any left here (a suffix's, already fetched there, or a Remix
        prompt's) are taken out of the text, never sent to Gemini as words.
        """
        prompt = await self.personalized(prompt, origin.user_id)
        try:
            prompt = take_links(prompt).text if "://" in prompt else prompt
        except RefParseError as exc:
            raise GenerationError(str(exc), title="Invalid reference") from exc
        parsed = self.parse(prompt)
        notes = list(parsed.notes)
        options = PromptParams(aspect_ratio=aspect_ratio, image_size=image_size)
        if model is not None:
            resolved = resolve_model(model)
            if resolved is None:
                raise GenerationError(f"{code('model ' + model)}: use flash, pro, flash3 or a full Gemini model name.")
            options = replace(options, model=resolved)
        prefs = await self.preferences(origin.user_id)
        defaults = PromptParams(
            model=prefs.model,
            aspect_ratio=prefs.aspect_ratio,
            image_size=prefs.image_size,
            grid_size=prefs.grid_size,
        )
        p = (overrides or PromptParams()).merged_over(parsed.params).merged_over(options).merged_over(defaults)
        params = JobParams(
            model=p.model or self._default_model,
            aspect_ratio=p.aspect_ratio,
            image_size=p.image_size,
            seed=p.seed,
            n=p.grid_size or 4,
        )
        params = self._fit_size(params, notes)
        check_params(params, references=len(ref_keys))
        items = tuple(NewItem(inputs=ItemInputs(ref_keys=tuple(ref_keys))) for _ in range(params.n))
        return Prepared(
            request=job_request(kind, origin, with_roles(parsed.model_prompt(), ref_roles), params, items),
            display=" ".join(prompt.split()),
            label=label,
            notes=tuple(notes),
            references=tuple(ref_names),
        )

    async def imagine_all(
        self,
        prompt: str,
        origin: Origin,
        *,
        max_prompts: int,
        ref_keys: Sequence[str] = (),
        model: str | None = None,
        aspect_ratio: str | None = None,
        image_size: str | None = None,
        overrides: PromptParams | None = None,
        ref_names: Sequence[str] = (),
        ref_labels: str | None = None,
    ) -> ImaginePlan:
        """Build one grid job per `{a, b}` permutation of `prompt` and per `--repeat` run; nothing is submitted.

        Each expansion is parsed on its own, so `--ar {1:1, 16:9}` works. With `--repeat N` and `--seed S` the runs
        take seeds S, S+1, …; without a seed each its own. The first job keeps the origin's idempotency key, the
        others add `#2`, `#3`, … to it, so a redelivered interaction queues none twice.

        Image links in the prompt (`--sref`/`--cref`/`--oref` links, bare links) are fetched and stored as
        references after the attached ones (`ref_keys`), which `ref_labels` (`1=style 2=character`) marks.

        Raises:
            GenerationError: more than `max_prompts` jobs, a bad parameter in any expansion, a link that cannot be
                a reference, more references than the model takes, or the owner's queue could not take them all
                (said before any is queued).
        """
        prompt = await self.personalized(prompt, origin.user_id)
        try:
            roles = parse_labels(ref_labels, len(ref_keys))
            linked = take_links(prompt)
        except RefParseError as exc:
            raise GenerationError(str(exc), title="Invalid reference") from exc
        if linked.links:
            if len(ref_keys) + len(linked.links) > MAX_REFERENCES:
                raise GenerationError(
                    f"At most {MAX_REFERENCES} reference images; {len(ref_keys) + len(linked.links)} given."
                )
            ref_keys = (*ref_keys, *[await self._fetch_link(link.url, origin) for link in linked.links])
            roles = (*roles, *(link.role for link in linked.links))
            ref_names = (*ref_names, *(link_name(link.url) for link in linked.links))
            prompt = linked.text
        try:
            texts = expand(prompt, cap=max_prompts)
        except PermutationError as exc:
            raise GenerationError(f"{exc}.", title="Too many prompts") from exc
        parsed = [self.parse(t) for t in texts]
        runs: list[tuple[str, int | None]] = []
        for text, p in zip(texts, parsed, strict=True):
            wanted = (overrides or PromptParams()).merged_over(p.params)  # the CLI's --repeat and --seed win
            runs.extend((text, seed) for seed in repeat_seeds(wanted.seed, wanted.repeat or 1))
        if len(runs) > max_prompts:
            raise GenerationError(
                f"The permutations and --repeat make {len(runs)} grids; at most {max_prompts} at once.",
                title="Too many prompts",
            )
        jobs: list[Prepared] = []
        for n, (text, seed) in enumerate(runs):
            key = origin.idempotency_key
            run_origin = origin if n == 0 or key is None else replace(origin, idempotency_key=f"{key}#{n + 1}")
            run_overrides = overrides if seed is None else replace(overrides or PromptParams(), seed=seed)
            jobs.append(
                await self.imagine(
                    text,
                    run_origin,
                    ref_keys=ref_keys,
                    model=model,
                    aspect_ratio=aspect_ratio,
                    image_size=image_size,
                    overrides=run_overrides,
                    ref_names=ref_names,
                    ref_roles=roles,
                )
            )
        plan = ImaginePlan(jobs=tuple(jobs))
        await self._check_room(origin, len(plan.jobs))
        return plan

    async def _check_room(self, origin: Origin, jobs: int) -> None:
        """Refuse `jobs` new jobs the owner's queue could not all take, before any is submitted."""
        if jobs <= 1:
            return  # a single job is admitted or refused by the dispatcher, as always
        caps = self._dispatcher.caps_for(is_admin=origin.is_admin)
        if not caps.admits_all(await self._ledger.user_load(origin.user_id), jobs):
            raise GenerationError(
                f"That makes {jobs} grids, more than your queue can take now (at most {caps.max_running} running "
                f"and {caps.max_waiting} waiting). Wait for some to finish, or use fewer permutations.",
                title=REFUSAL_TITLE,
            )

    async def submit_all(self, plan: ImaginePlan, origin: Origin) -> list[Submitted]:
        """Submit every job of a plan, after checking again that the owner's queue takes them all.

        Raises:
            GenerationError: the queue filled up since the plan was shown; nothing was submitted.
        """
        await self._check_room(origin, len(plan.jobs))
        if self._budgets is not None and len(plan.jobs) > 1:
            try:  # all of them against the caps at once, so none is queued when the last would be refused
                await self._budgets.check_total([p.request for p in plan.jobs])
            except BudgetError as exc:
                raise GenerationError(exc.user_message, title=exc.title) from exc
        return [await self.submit(p) for p in plan.jobs]

    async def reroll(self, job: Job, origin: Origin, *, prompt: str | None = None) -> Prepared:
        """Run a job's prompt again with new seeds (a Remix prompt replaces it); its references go along.

        A Remix prompt's own parameters win; the job's model, ratio and size stay for what it leaves unsaid (the
        Remix box holds what the user typed, not the options or settings the job was made with).
        """
        refs, names = await self._refs_of(job), await self.reference_names(job)
        if prompt is not None:
            return await self.imagine(
                prompt,
                origin,
                ref_keys=refs,
                model=job.params.model,
                aspect_ratio=job.params.aspect_ratio,
                image_size=job.params.image_size,
                kind=JobKind.REROLL,
                ref_names=names,
            )
        display = await self.display_of(job)
        params = replace(job.params, seed=None, n=max(job.params.n, 1) if job.kind is JobKind.GRID else 4)
        items = tuple(NewItem(inputs=ItemInputs(ref_keys=refs)) for _ in range(params.n))
        request = job_request(JobKind.REROLL, origin, job.prompt, params, items)
        return Prepared(request=request, display=display, notes=await self.shown_notes(job), references=names)

    async def vary(
        self, image: Image, origin: Origin, *, strength: str, prompt: str | None = None, n: int = 4
    ) -> Prepared:
        """Make `n` variations of an image: the image as the reference, with a wording for `strength`."""
        job = await self._job(image.job_id)
        wording = VARY_WORDING.get(strength)
        if wording is None:
            raise GenerationError(f"Variation strength must be subtle or strong, not {strength!r}.")
        base, display, params = without_roles(job.prompt), await self.display_of(job), job.params
        notes: list[str] = []
        if prompt is not None:
            prompt = await self.personalized(prompt, origin.user_id)
            parsed = self.parse(prompt)
            notes.extend(parsed.notes)
            p = parsed.params
            base, display = parsed.model_prompt(), " ".join(prompt.split())
            params = replace(
                params,
                model=p.model or params.model,
                aspect_ratio=p.aspect_ratio or params.aspect_ratio,
                image_size=p.image_size or params.image_size,
            )
        params = replace(params, seed=None, n=n)
        check_params(params, references=1)
        items = tuple(NewItem(inputs=ItemInputs(ref_keys=(image.key,))) for _ in range(n))
        label = f"Variations ({strength.capitalize()})"
        request = job_request(JobKind.VARIATION, origin, f"{base}\n\n{wording}", params, items, parent=image)
        return Prepared(request=request, display=display, label=label, notes=tuple(notes))

    async def upscale(self, image: Image, origin: Origin, *, size: str) -> Prepared:
        """Remake an image at 2K or 4K on a model that takes the size (the job's, else Nano Banana Pro)."""
        if size not in ("2K", "4K"):
            raise GenerationError(f"Upscale to 2K or 4K, not {size}.")
        job = await self._job(image.job_id)
        notes: list[str] = []
        model = job.params.model
        if not takes_size(model, size):
            if not takes_size(UPSCALE_FALLBACK_MODEL, size):
                raise GenerationError(f"No configured model makes {size} images.")
            notes.append(f"{model} makes 1K images only; upscaled with {UPSCALE_FALLBACK_MODEL}.")
            model = UPSCALE_FALLBACK_MODEL
        params = JobParams(model=model, aspect_ratio=job.params.aspect_ratio, image_size=size, n=1)
        check_params(params, references=1)
        items = (NewItem(inputs=ItemInputs(ref_keys=(image.key,))),)
        prompt = f"{without_roles(job.prompt)}\n\n{UPSCALE_WORDING}"
        return Prepared(
            request=job_request(JobKind.UPSCALE, origin, prompt, params, items, parent=image),
            display=await self.display_of(job),
            label=f"Upscaled ({size})",
            notes=tuple(notes),
        )

    async def zoom(self, image: Image, origin: Origin, *, factor: float) -> Prepared:
        """Zoom out: the image centred on a canvas `factor` times larger, the border filled by the model."""
        if factor not in ZOOM_FACTORS:
            raise GenerationError("Zoom out 1.5× or 2×.")
        data = await self._store.get_bytes(image.key)
        canvas = await asyncio.to_thread(zoom_out_canvas, data, factor)
        return await self._outpaint(image, origin, canvas, label=f"Zoom Out {factor:g}×", kind=JobKind.ZOOM)

    async def make_square(self, image: Image, origin: Origin) -> Prepared:
        """Make Square: the image on the smallest square canvas holding it, the two new bands filled by the model."""
        data = await self._store.get_bytes(image.key)
        width, height = await asyncio.to_thread(_image_size, data)
        if width == height:
            raise GenerationError("This image is already square.")
        canvas = await asyncio.to_thread(zoom_canvas, data, 1.0, ratio=(1, 1))
        return await self._outpaint(image, origin, canvas, label="Make Square", kind=JobKind.SQUARE)

    async def custom_zoom(self, image: Image, origin: Origin, *, factor: str, prompt: str) -> Prepared:
        """Custom Zoom: zoom out by `factor` (1.0–2.0, Midjourney's `--zoom`) with an edited prompt.

        The prompt's own parameters (`--model`, `--size`) apply; its `--ar`, as in Midjourney, widens or heightens
        the canvas to that shape (the image is never cut), else the shape is the image's.
        """
        zoom = self.zoom_factor(factor)
        parsed = self.parse(prompt)
        ratio = parsed.params.aspect_ratio
        shape = (int(ratio.split(":")[0]), int(ratio.split(":")[1])) if ratio else None
        data = await self._store.get_bytes(image.key)
        canvas = await asyncio.to_thread(zoom_canvas, data, zoom, ratio=shape)
        wording = FILL_WORDING if zoom > 1.0 else KEEP_FRAME_WORDING
        return await self._outpaint(
            image,
            origin,
            canvas,
            label=f"Custom Zoom {zoom:g}×",
            kind=JobKind.ZOOM,
            prompt=f"{parsed.model_prompt()}\n\n{wording}",
            display=" ".join(prompt.split()),
            model=parsed.params.model,
            image_size=parsed.params.image_size,
            notes=parsed.notes,
        )

    @staticmethod
    def zoom_factor(text: str) -> float:
        """Read a Custom Zoom factor as typed ("1.5", "1,5", "2x").

        Raises:
            GenerationError: not a number between 1.0 and 2.0.
        """
        low, high = CUSTOM_ZOOM_RANGE
        try:
            value = float(text.strip().lower().removesuffix("x").removesuffix("×").replace(",", "."))
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # NaN fails both
            raise GenerationError(f"The zoom must be a number from {low:g} to {high:g}, like 1.5; {code(text)} given.")
        return value

    async def region_picker(self, image: Image) -> bytes:
        """Return the picture Vary (Region)'s picker shows: the image under a 3×3 grid numbered 1–9 (PNG)."""
        data = await self._store.get_bytes(image.key)
        return await asyncio.to_thread(region_picker_overlay, data)

    async def vary_region(self, image: Image, origin: Origin, *, region: str | Region, prompt: str) -> Prepared:
        """Vary (Region): change one region of an image to what `prompt` says.

        The region is typed (`bot.core.regions.parse_region` reads it) or already a box (cells picked on the
        picker's grid, `bot.core.regions.cells_region`). The worker sends the image, a copy with the region outlined
        and the region in words, then keeps only the region of the answer (`worker.region`), so the rest of the
        image is unchanged.
        """
        try:
            box = parse_region(region) if isinstance(region, str) else region
        except RegionError as exc:
            raise GenerationError(str(exc), title="Unknown region") from exc
        text = " ".join(prompt.split())
        if not text:
            raise GenerationError("Say what should be in the region, e.g. “a small red kite”.")
        job = await self._job(image.job_id)
        ratio = job.params.aspect_ratio
        if image.width and image.height:
            spec = model_spec(job.params.model)
            ratio = snap_aspect_ratio(image.width, image.height, spec.aspect_ratios or GEMINI_ASPECT_RATIOS)
        params = JobParams(model=job.params.model, aspect_ratio=ratio, image_size=job.params.image_size, n=1)
        refusal = model_spec(params.model).check(
            references=1, aspect_ratio=params.aspect_ratio, image_size=params.image_size, edit=True
        )  # the outlined copy is one more image beside the source
        if refusal is not None:
            raise GenerationError(refusal + ".")
        inputs = ItemInputs(edit=EditInput(source_key=image.key), region=box)
        return Prepared(
            request=job_request(JobKind.REGION, origin, text, params, (NewItem(inputs=inputs),), parent=image),
            display=text,
            label=f"Vary (Region: {region_label(box)})",
        )

    async def pan(self, image: Image, origin: Origin, *, direction: Direction) -> Prepared:
        """Pan: the canvas extended towards `direction`, the new area filled by the model."""
        data = await self._store.get_bytes(image.key)
        canvas = await asyncio.to_thread(pan_canvas, data, direction)
        return await self._outpaint(
            image, origin, canvas, label=f"Pan {direction.value.capitalize()}", kind=JobKind.PAN
        )

    async def edit(
        self,
        image: Image,
        origin: Origin,
        *,
        instruction: str,
        ref_keys: Sequence[str] = (),
        ref_names: Sequence[str] = (),
    ) -> Prepared:
        """Edit an image: the next turn of its chain, carrying the chain's earlier instructions.

        Its message shows the prompt of the image it edits, then the instruction (`edit_display`).
        """
        instruction = " ".join(instruction.split())
        if not instruction:
            raise GenerationError("Say how to change the image, e.g. “make the sky stormy”.")
        job = await self._job(image.job_id)
        history = await self.edit_history(job.id)
        params = JobParams(
            model=job.params.model, aspect_ratio=job.params.aspect_ratio, image_size=job.params.image_size, n=1
        )
        spec_refusal = model_spec(params.model).check(
            references=len(ref_keys), aspect_ratio=params.aspect_ratio, image_size=params.image_size, edit=True
        )
        if spec_refusal is not None:
            raise GenerationError(spec_refusal + ".")
        inputs = ItemInputs(ref_keys=tuple(ref_keys), edit=EditInput(source_key=image.key, history=history))
        return Prepared(
            request=job_request(JobKind.EDIT, origin, instruction, params, (NewItem(inputs=inputs),), parent=image),
            display=edit_display(await self.display_of(job), instruction),
            label="Edited",
            edit_history=(*history, instruction),
            references=tuple(ref_names),
        )

    async def submit(self, prepared: Prepared) -> Submitted:
        """Submit a prepared request with what later turns need (display prompt, label, edit chain).

        The notes travel with the request, so the ledger writes them in the transaction that creates the job: a
        crash cannot leave a job without its display prompt or break an edit chain.
        """
        request = replace(prepared.request, notes=self.notes_of(prepared))
        if self._budgets is not None:
            try:
                request = await self._budgets.hold_for(request)
            except BudgetError as exc:
                raise GenerationError(exc.user_message, title=exc.title) from exc
        result = await self._dispatcher.submit(request)
        if result.job is not None and result.status.value != "duplicate":
            log.debug("job %s prompt %.80s", result.job.id, prepared.display)
        return Submitted(result=result, prepared=prepared)

    @staticmethod
    def notes_of(prepared: Prepared) -> dict[str, object]:
        """Return the job notes a prepared request is created with (its request's own notes included)."""
        notes: dict[str, object] = {**prepared.request.notes, NOTE_DISPLAY: prepared.display}
        if prepared.label:
            notes[NOTE_LABEL] = prepared.label
        if prepared.edit_history is not None:
            notes[NOTE_EDIT_HISTORY] = list(prepared.edit_history)
        if prepared.notes:
            notes[NOTE_SHOWN] = list(prepared.notes)
        if prepared.references:
            notes[NOTE_REFERENCES] = list(prepared.references)
        return notes

    @staticmethod
    def message_lines(prepared: Prepared) -> tuple[str, ...]:
        """Return the lines a prepared job's message shows under its own: its notes and its references."""
        return job_note_lines(prepared.notes, prepared.references)

    async def message_lines_of(self, job: Job) -> tuple[str, ...]:
        """Return the lines a job's message shows under its own, from its notes (after a restart too)."""
        return job_note_lines(await self.shown_notes(job), await self.reference_names(job))

    async def shown_notes(self, job: Job) -> tuple[str, ...]:
        """Return the notes a job's message shows (ignored parameters, a snapped ratio, …)."""
        shown = await self._ledger.note(job.id, NOTE_SHOWN)
        return tuple(str(n) for n in shown) if isinstance(shown, list) else ()

    async def reference_names(self, job: Job) -> tuple[str, ...]:
        """Return the file names of the reference images the user gave a job (empty for none, or an older job)."""
        names = await self._ledger.note(job.id, NOTE_REFERENCES)
        return tuple(str(n) for n in names) if isinstance(names, list) else ()

    # ---- reading back ------------------------------------------------------------------------------------------

    async def job(self, job_id: JobId) -> Job:
        """Return a job.

        Raises:
            GenerationError: Peel no longer knows it.
        """
        return await self._job(job_id)

    async def image(self, job_id: JobId, index: int) -> Image:
        """Return the image made for one item of a job.

        Raises:
            GenerationError: that image was not made, or is no longer known.
        """
        image = await self._ledger.image_at(job_id, index)
        if image is None:
            raise GenerationError("That image was not made (or is no longer known); try 🔄 instead.")
        return image

    async def images(self, job_id: JobId) -> list[Image]:
        """Return the images a job made, by index."""
        return await self._ledger.images(job_id=job_id)

    async def job_cost(self, job_id: JobId) -> float | None:
        """Return what a job was recorded to have cost in USD (Gemini's reported usage priced, RunPod time)."""
        return await self._ledger.job_cost(job_id)

    async def items(self, job_id: JobId) -> list[Item]:
        """Return a job's items, by index."""
        return await self._ledger.items(job_id)

    async def item(self, job_id: JobId, index: int) -> Item | None:
        """Return one item of a job."""
        return await self._ledger.get_item(job_id, index)

    async def image_bytes(self, image: Image) -> bytes:
        """Return an image's stored bytes."""
        return await self._store.get_bytes(image.key)

    async def toggle_favourite(self, image: Image) -> bool:
        """Flip an image's favourite mark; return whether it is a favourite now."""
        updated = await self._ledger.set_favourite(image.id, is_favourite=not image.is_favourite)
        return updated is not None and updated.is_favourite

    async def record_image_message(self, image: Image, message_id: int) -> None:
        """Remember the message that shows one image alone (replies to it edit that image)."""
        await self._ledger.set_image_message(image.id, message_id)

    async def mark_deleted(self, shown: Shown) -> None:
        """Record that the message showing these images was deleted (❌): they leave their group's ZIP and export."""
        await self._ledger.mark_images_deleted([image.id for image in shown.images], now=datetime.now(UTC))

    async def shown_in(self, message_id: int) -> Shown | None:
        """Return what a message shows: one image (posted alone), or a job's images (its status or result)."""
        image = await self._ledger.image_of_message(message_id)
        if image is not None:
            job = await self._ledger.get_job(image.job_id)
            return None if job is None else Shown(job=job, images=[image], is_image=True)
        shown = await self._ledger.job_of_message(message_id)
        if shown is None:
            return None
        job = await self._ledger.get_job(shown[0])
        return None if job is None else Shown(job=job, images=await self.images(job.id), is_image=False)

    async def outputs(self, job_id: JobId) -> list[tuple[Item, bytes | None]]:
        """Return every item of a job with its image (None for an item that was not made)."""
        outputs: list[tuple[Item, bytes | None]] = []
        for item in await self._ledger.items(job_id):
            made = item.status is ItemStatus.OK
            outputs.append((item, await self._store.get_bytes(item.output_key) if made else None))
        return outputs

    async def display_of(self, job: Job) -> str:
        """Return the prompt of a job as the user typed it (falls back to the model prompt)."""
        display = await self._ledger.note(job.id, NOTE_DISPLAY)
        return display if isinstance(display, str) and display else job.prompt

    async def label_of(self, job: Job) -> str:
        """Return what kind of result a job is, for its message ("" for a plain grid)."""
        label = await self._ledger.note(job.id, NOTE_LABEL)
        return label if isinstance(label, str) else ""

    async def edit_history(self, job_id: JobId) -> tuple[str, ...]:
        """Return the instructions of the edit chain that made a job's image (empty for a non-edit)."""
        history = await self._ledger.note(job_id, NOTE_EDIT_HISTORY)
        return tuple(str(h) for h in history) if isinstance(history, list) else ()

    async def remix_text(self, job: Job) -> str:
        """Return the text a Remix modal starts with: the prompt exactly as the user typed it.

        Nothing the user did not type is added (no `--model flash` from their settings): the job's model, ratio
        and size still hold for what the submitted text leaves unsaid (`reroll`, `vary`).
        """
        return await self.display_of(job)

    # ---- helpers -----------------------------------------------------------------------------------------------

    async def _job(self, job_id: JobId) -> Job:
        job = await self._ledger.get_job(job_id)
        if job is None:
            raise GenerationError("That job is no longer known to Peel.")
        return job

    async def _refs_of(self, job: Job) -> tuple[str, ...]:
        item = await self._ledger.get_item(job.id, 0)
        return item.inputs.ref_keys if item is not None else ()

    async def _outpaint(
        self,
        image: Image,
        origin: Origin,
        canvas: bytes,
        *,
        label: str,
        kind: JobKind,
        prompt: str | None = None,
        display: str | None = None,
        model: str | None = None,
        image_size: str | None = None,
        notes: Sequence[str] = (),
    ) -> Prepared:
        """Return the job filling `canvas` (the image on a larger canvas); `prompt` unset: the job's, with the fill."""
        job = await self._job(image.job_id)
        taken = await self._intake.image(canvas, name=f"{kind.value}.png")
        if not isinstance(taken, AcceptedImage):
            raise GenerationError(f"The enlarged canvas could not be stored: {taken.message}.")
        model = model or job.params.model
        spec = model_spec(model)
        width, height = await asyncio.to_thread(_image_size, canvas)
        ratio = snap_aspect_ratio(width, height, spec.aspect_ratios or GEMINI_ASPECT_RATIOS)
        params = JobParams(model=model, aspect_ratio=ratio, image_size=image_size or job.params.image_size, n=1)
        params = self._fit_size(params, [])
        check_params(params, references=1)
        items = (NewItem(inputs=ItemInputs(ref_keys=(taken.key,))),)
        prompt = prompt or f"{without_roles(job.prompt)}\n\n{FILL_WORDING}"  # the canvas is the only image sent
        return Prepared(
            request=job_request(kind, origin, prompt, params, items, parent=image),
            display=display or await self.display_of(job),
            label=label,
            notes=tuple(notes),
        )

    def _fit_size(self, params: JobParams, notes: list[str]) -> JobParams:
        if params.image_size in (None, "1K") or model_spec(params.model).takes_image_size:
            return params
        raise GenerationError(
            f"`--size {params.image_size}`: {params.model} makes 1K images only; use `--model pro` for 2K or 4K."
        )


__all__ = ["GenerationService"]


def link_name(url: str) -> str:
    """Return what a linked reference is called in the job's message: the link's last path segment, else its host."""
    parts = urlsplit(url)
    return parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.hostname or url
