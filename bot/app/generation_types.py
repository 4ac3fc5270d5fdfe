"""The values interactive generation trades in: who asks, a request ready to submit, what a message shows.

`bot.app.generation.GenerationService` builds and submits the requests; this module holds what it and the front ends
share: the user's `/settings` preferences, the origin of a request, the prepared request and its result, the job
notes a generation keeps, the wordings sent to the model for each single-image tool, and the user's message for a
safety block.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.core.item_errors import item_error_message
from bot.core.models import GroupId, Image, ItemStatus, Job, JobKind, JobParams, JobRequest, NewItem, UserId
from bot.core.params import GEMINI_ASPECT_RATIOS, GRID_SIZES
from bot.dispatch import SubmitResult
from bot.errors import UserFacingError
from worker.contract import IMAGE_SIZES, MODEL_ALIASES, ErrorCode, model_spec

MAX_REFERENCES = 14  # the most any model takes (worker.catalogue); each model's own cap is checked after
UPSCALE_FALLBACK_MODEL = MODEL_ALIASES["pro"]
ZOOM_FACTORS: tuple[float, ...] = (1.5, 2.0)
CUSTOM_ZOOM_RANGE = (1.0, 2.0)  # Midjourney's --zoom takes 1 to 2

VARY_WORDING: Mapping[str, str] = {
    "subtle": (
        "Make a subtle variation of the reference image: keep its composition, subject, colours and style, "
        "and change only small details."
    ),
    "strong": (
        "Make a strong variation of the reference image: keep its subject and idea, but freely change the "
        "composition, pose, lighting and details."
    ),
}
UPSCALE_WORDING = (
    "Reproduce the reference image exactly, same composition, colours and content, at a higher resolution with "
    "sharper, finer detail."
)
FILL_WORDING = (
    "The reference image is a picture placed on a larger flat grey canvas. Keep the picture exactly as it is and "
    "replace all of the grey area, seamlessly extending the scene into it."
)

KEEP_FRAME_WORDING = (
    "Redraw the reference image with the same framing and composition, following the prompt above where it asks "
    "for a change."
)

NOTE_DISPLAY = "display"  # the prompt as the user typed it (text and parameters), shown on messages and in Remix
NOTE_LABEL = "label"  # what kind of result a job is ("Variations (Strong)", "Upscaled (2K)", ...)
NOTE_EDIT_HISTORY = "edit_history"  # the instructions of an edit chain up to and including this job's
NOTE_SHOWN = "shown_notes"  # the notes shown under the job's message (ignored parameters, a snapped ratio, …)
NOTE_REFERENCES = "reference_names"  # the file names of the reference images the user gave, as the message names them


class GenerationError(UserFacingError):
    """A request Peel cannot make; `user_message` says why and what to do instead."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserPrefs:
    """A user's defaults from `/settings` (stored as the ledger's user preferences)."""

    model: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    grid_size: int = 4
    remix: bool = False
    variation: str = "strong"

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> "UserPrefs":
        """Read preferences stored by `to_json` (or by another front end), ignoring what does not fit."""
        model, ratio, size = data.get("model"), data.get("aspect_ratio"), data.get("image_size")
        grid, remix, variation = data.get("grid_size"), data.get("remix"), data.get("variation")
        return cls(
            model=model if isinstance(model, str) and model else None,
            aspect_ratio=ratio if isinstance(ratio, str) and ratio in GEMINI_ASPECT_RATIOS else None,
            image_size=size if isinstance(size, str) and size in IMAGE_SIZES else None,
            grid_size=grid if isinstance(grid, int) and grid in GRID_SIZES else 4,
            remix=remix is True,
            variation=variation if isinstance(variation, str) and variation in VARY_WORDING else "strong",
        )

    def to_json(self) -> dict[str, object]:
        """Return the JSON object stored as the user's preferences."""
        return {
            "model": self.model,
            "aspect_ratio": self.aspect_ratio,
            "image_size": self.image_size,
            "grid_size": self.grid_size,
            "remix": self.remix,
            "variation": self.variation,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Who asks, and where: the new job is theirs and belongs to the group of the channel or thread."""

    user_id: UserId
    guild_id: int | None = None
    group_id: GroupId | None = None
    idempotency_key: str | None = None
    is_admin: bool = False
    role_ids: frozenset[int] = frozenset()  # their roles where they ask (budget gates and caps)


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A request ready to submit, with what to show: the prompt as typed, a label and notes for the user."""

    request: JobRequest
    display: str
    label: str = ""
    notes: tuple[str, ...] = ()
    edit_history: tuple[str, ...] | None = None
    references: tuple[str, ...] = ()  # the names of the user's reference images, shown on the job's message


@dataclass(frozen=True, slots=True, kw_only=True)
class Shown:
    """What a Peel message shows: a job and its images (`is_image`: the message shows that one image alone)."""

    job: Job
    images: list[Image]
    is_image: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """What submitting a prepared request did."""

    result: SubmitResult
    prepared: Prepared


@dataclass(frozen=True, slots=True, kw_only=True)
class ImaginePlan:
    """What one `/imagine` makes once its `{a, b}` permutations and `--repeat` are expanded: one grid job each.

    Shown before anything is queued when it is more than one grid.
    """

    jobs: tuple[Prepared, ...]

    @property
    def images(self) -> int:
        """How many images the jobs make together."""
        return sum(p.request.params.n for p in self.jobs)

    @property
    def cost_usd(self) -> float | None:
        """The price of every image (None: the price table does not know one of them)."""
        total = 0.0
        for p in self.jobs:
            price = model_spec(p.request.params.model).price(p.request.params.image_size)
            if price is None:
                return None
            total += price * p.request.params.n
        return total


def takes_size(model: str, size: str) -> bool:
    """Return whether `model` makes images of `size`."""
    sizes = model_spec(model).image_sizes
    return sizes is None or size in sizes


def alias_of(model: str) -> str:
    """Return the short name (flash, pro, flash3) of a model, or the model itself."""
    for alias in ("flash", "pro", "flash3"):
        if MODEL_ALIASES[alias] == model:
            return alias
    return model


def safety_reason(items: Sequence[tuple[ItemStatus, str | None, str | None]]) -> str | None:
    """Return the user's message for a safety block when every failed item was one, else None.

    The items' own messages are the worker's (operator detail) and are never shown.
    """
    failed = [code for status, code, _message in items if status is ItemStatus.ERROR]
    if failed and all(code == ErrorCode.SAFETY.value for code in failed):
        return item_error_message(ErrorCode.SAFETY.value)
    return None


def check_params(params: JobParams, *, references: int) -> None:
    """Refuse parameters the model does not take (its reference, ratio and size limits)."""
    refusal = model_spec(params.model).check(
        references=references, aspect_ratio=params.aspect_ratio, image_size=params.image_size
    )
    if refusal is not None:
        raise GenerationError(refusal + ".")


def job_request(
    kind: JobKind,
    origin: Origin,
    prompt: str,
    params: JobParams,
    items: tuple[NewItem, ...],
    *,
    parent: Image | None = None,
) -> JobRequest:
    """Return the request for a job of `kind` asked for by `origin` (`parent`: the image it was made from)."""
    return JobRequest(
        kind=kind,
        owner_id=origin.user_id,
        prompt=prompt,
        params=params,
        items=items,
        guild_id=origin.guild_id,
        group_id=origin.group_id,
        parent_image_id=parent.id if parent is not None else None,
        idempotency_key=origin.idempotency_key,
        is_admin=origin.is_admin,
        role_ids=origin.role_ids,
    )


__all__ = [
    "CUSTOM_ZOOM_RANGE",
    "FILL_WORDING",
    "KEEP_FRAME_WORDING",
    "MAX_REFERENCES",
    "NOTE_DISPLAY",
    "NOTE_EDIT_HISTORY",
    "NOTE_LABEL",
    "NOTE_REFERENCES",
    "NOTE_SHOWN",
    "UPSCALE_FALLBACK_MODEL",
    "UPSCALE_WORDING",
    "VARY_WORDING",
    "ZOOM_FACTORS",
    "GenerationError",
    "Origin",
    "Prepared",
    "Shown",
    "Submitted",
    "UserPrefs",
    "alias_of",
    "check_params",
    "job_request",
    "safety_reason",
    "takes_size",
]
