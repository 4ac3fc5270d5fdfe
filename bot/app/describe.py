"""`/describe` and `/blend` without Discord: an image described as four prompts, and 2–5 images blended in a grid.

Describe, as Midjourney's (https://docs.midjourney.com/, "Describe"): the image is validated and stored like a
reference (`storage.intake`; a link is fetched under `/batch`'s URL rules, `bot.net.urlfetch`), then described by a
job of kind DESCRIBE: one item whose reference is the image, run by a worker on the text model
`GEMINI_DESCRIBE_MODEL` through the same queue, caps and budgets as an image (the worker owns Gemini; the contract's
`kind="describe"`). Its answer (`DescribeAnswer`: four cleaned prompts, each with the image's `--ar`) is read back
from the store. Imagining a described prompt is a plain `/imagine` of it: the described image is not sent along,
as Midjourney does not.

Blend, as Midjourney's: the images are the references of a normal grid, with `BLEND_WORDING` (and the user's prompt)
as its prompt, at the shape asked (portrait 2:3, square 1:1, landscape 3:2). The model's own reference cap applies.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bot.app.generation import GenerationService
from bot.app.generation_types import GenerationError, Origin, Prepared, Submitted, job_request
from bot.app.references import link_downloads, link_policy
from bot.core.events import JobCancelled, JobFailed, JobFinished
from bot.core.item_errors import item_error_message
from bot.core.models import ItemInputs, ItemStatus, JobId, JobKind, JobParams, NewItem
from bot.core.render import code
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from bot.net.urlfetch import FetchError
from bot.settings import BotSettings
from storage.base import Store
from storage.errors import StorageError
from storage.intake import AcceptedImage, UploadIntake
from storage.thumbnails import ThumbnailError, make_thumbnail
from worker.contract import DESCRIBE_PROMPTS, DescribeAnswer, describe_key

# What the text model is asked (the worker adds the JSON schema of exactly four prompts).
DESCRIBE_INSTRUCTION = (
    f"Describe this image as {DESCRIBE_PROMPTS} different prompts for an image generator, as Midjourney's /describe "
    "does. Each prompt is one or two sentences that could recreate the image: its subject, setting, style or "
    "medium, lighting, colours and composition. Make the four differ in emphasis and wording. Plain text only: "
    "no numbering, no Markdown, no parameters such as --ar, no names of real people."
)
# What a blend's grid is asked, before the user's own prompt (docs/architecture.md, "Describe and Blend").
BLEND_WORDING = (
    "Blend the reference images into one new, coherent image: combine their subjects, styles, colours and moods "
    "as if they were one scene, rather than placing them side by side."
)
BLEND_SHAPES = {"portrait": "2:3", "square": "1:1", "landscape": "3:2"}
BLEND_MIN, BLEND_MAX = 2, 5
# Attached or linked images larger than this are refused before reading (as /imagine's attachments).
MAX_DESCRIBE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Described:
    """A describe job's answer: its prompts (each ending with ` --ar W:H`) and the image's size and shape."""

    job_id: JobId
    prompts: tuple[str, ...]
    width: int
    height: int
    aspect_ratio: str


class DescribeService:
    """Builds, submits and reads back describe jobs; builds blend grids (Discord-independent)."""

    def __init__(
        self,
        ledger: Ledger,
        dispatcher: Dispatcher,
        store: Store,
        generation: GenerationService,
        settings: BotSettings,
    ) -> None:
        """Build the service over the runtime's parts; `settings` gives the model and the URL rules of /batch."""
        self._ledger = ledger
        self._dispatcher = dispatcher
        self._store = store
        self._generation = generation
        self._intake = UploadIntake(store)
        self._model = settings.gemini_describe_model
        self._downloads = link_downloads(settings, max_bytes=min(MAX_DESCRIBE_BYTES, settings.batch_fetch_max_bytes))
        self._policy = link_policy(settings)

    @property
    def model(self) -> str:
        """The text model images are described with."""
        return self._model

    # ---- describe ----------------------------------------------------------------------------------------------

    async def describe(self, name: str, data: bytes, origin: Origin) -> Submitted:
        """Store an image (validated as a reference is) and submit a job describing it.

        Raises:
            GenerationError: not an acceptable image (why), or the queue or a budget refused the job.
        """
        key = await self._take(name, data)
        return await self._submit(key, name, origin)

    async def describe_url(self, url: str, origin: Origin) -> Submitted:
        """Fetch an image from a user's link under /batch's URL rules, then describe it.

        Raises:
            GenerationError: the link was refused or failed (why), or as `describe`.
        """
        name = url.rsplit("/", 1)[-1].split("?", 1)[0][:80] or "link"
        try:
            async with self._downloads.fetch(url, user_id=origin.user_id, policy=self._policy, name="image") as got:
                data = await asyncio.to_thread(Path(got.path).read_bytes)
        except FetchError as exc:
            raise GenerationError(f"That link can't be used: {exc.user_message}") from exc
        return await self.describe(name, data, origin)

    async def again(self, job_id: JobId, origin: Origin) -> Submitted:
        """Describe the same image again (🔄): a new job with the same stored image."""
        item = await self._ledger.get_item(job_id, 0)
        job = await self._ledger.get_job(job_id)
        if item is None or job is None or job.kind is not JobKind.DESCRIBE or not item.inputs.ref_keys:
            raise GenerationError("That description is no longer known to Peel; run /describe again.")
        display = await self._generation.display_of(job)
        return await self._submit(item.inputs.ref_keys[0], display, origin)

    async def wait(self, job_id: JobId, *, timeout_s: float) -> Described:
        """Wait until a describe job ends and return its answer.

        Raises:
            GenerationError: the job failed (the reason users read), was cancelled, or took over `timeout_s`.
        """
        with self._dispatcher.subscribe() as events:
            job = await self._ledger.get_job(job_id)
            if job is not None and not job.status.is_final:
                try:
                    async with asyncio.timeout(timeout_s):
                        async for event in events:
                            if isinstance(event, JobFinished | JobFailed | JobCancelled) and event.job.id == job_id:
                                break
                except TimeoutError:
                    raise GenerationError("The description is taking too long; try 🔄 later.") from None
        return await self.answer(job_id)

    async def answer(self, job_id: JobId) -> Described:
        """Return a finished describe job's answer.

        Raises:
            GenerationError: it made no answer (the reason users read for its error code).
        """
        item = await self._ledger.get_item(job_id, 0)
        if item is None or item.status is not ItemStatus.OK:
            if item is not None and item.status is ItemStatus.CANCELLED:
                raise GenerationError("The description was cancelled.")
            reason = item_error_message(item.error_code if item is not None else None)
            raise GenerationError(f"The image could not be described: {reason}")
        try:
            raw = await self._store.get_bytes(describe_key(item.output_key))
            answer = DescribeAnswer.model_validate_json(raw)
        except Exception as exc:  # a missing or unreadable answer is a failure the user can retry
            raise GenerationError("The description could not be read back; try 🔄.") from exc
        return Described(
            job_id=job_id,
            prompts=tuple(answer.prompts),
            width=answer.width,
            height=answer.height,
            aspect_ratio=answer.aspect_ratio,
        )

    async def preview(self, job_id: JobId) -> bytes | None:
        """Return a small WebP of the image a describe job read, shown beside its prompts (None when unreadable)."""
        item = await self._ledger.get_item(job_id, 0)
        if item is None or not item.inputs.ref_keys:
            return None
        try:
            data = await self._store.get_bytes(item.inputs.ref_keys[0])
            return await asyncio.to_thread(make_thumbnail, data)
        except (StorageError, ThumbnailError):
            return None

    async def prompt(self, job_id: JobId, number: int) -> str:
        """Return described prompt `number` (1–4) of a job."""
        described = await self.answer(job_id)
        if not 1 <= number <= len(described.prompts):
            raise GenerationError(f"There is no prompt {number}.")
        return described.prompts[number - 1]

    async def imagine(self, job_id: JobId, number: int, origin: Origin) -> Prepared:
        """Build the grid of described prompt `number`, without the described image (as Midjourney)."""
        return await self._generation.imagine(await self.prompt(job_id, number), origin)

    async def _take(self, name: str, data: bytes) -> str:
        if len(data) > MAX_DESCRIBE_BYTES:
            raise GenerationError(f"{code(name)} is over 50 MB; use a smaller image.")
        taken = await self._intake.image(data, name=name)
        if not isinstance(taken, AcceptedImage):
            raise GenerationError(f"{code(name)} can't be described: {taken.message}.")
        return taken.key

    async def _submit(self, key: str, name: str, origin: Origin) -> Submitted:
        params = JobParams(model=self._model, n=1)
        items = (NewItem(inputs=ItemInputs(ref_keys=(key,))),)
        request = job_request(JobKind.DESCRIBE, origin, DESCRIBE_INSTRUCTION, params, items)
        return await self._generation.submit(Prepared(request=request, display=name, label="Describe"))

    # ---- blend -------------------------------------------------------------------------------------------------

    async def blend(
        self, files: Sequence[tuple[str, bytes]], origin: Origin, *, dimensions: str = "square", prompt: str = ""
    ) -> Prepared:
        """Build a grid blending 2–5 images: they are its references, `BLEND_WORDING` and `prompt` its prompt.

        Raises:
            GenerationError: fewer than 2 or more than 5 images, one not acceptable, more than the model takes
                (its cap named), or a bad parameter in `prompt`.
        """
        if not BLEND_MIN <= len(files) <= BLEND_MAX:
            raise GenerationError(f"Blend takes {BLEND_MIN} to {BLEND_MAX} images; {len(files)} given.")
        ratio = BLEND_SHAPES.get(dimensions)
        if ratio is None:
            raise GenerationError(f"Dimensions are portrait, square or landscape, not {code(dimensions)}.")
        keys = await self._generation.take_references(files)
        text = " ".join(f"{BLEND_WORDING} {prompt}".split())
        # No "Blend by" label: the display already says it is a blend ("**Blend of 2 images** - @user").
        names = [name for name, _data in files]
        prepared = await self._generation.imagine(text, origin, ref_keys=keys, aspect_ratio=ratio, ref_names=names)
        shown = " ".join(prompt.split())
        display = f"Blend of {len(files)} images" + (f": {shown}" if shown else "")
        return replace(prepared, display=display)


__all__ = [
    "BLEND_MAX",
    "BLEND_MIN",
    "BLEND_SHAPES",
    "BLEND_WORDING",
    "DESCRIBE_INSTRUCTION",
    "DescribeService",
    "Described",
]
