"""The bot ⇄ worker contract: pydantic models of one RunPod job's input, progress and output, and the model catalogue.

The bot builds `ChunkInput` and parses `ChunkProgress` / `ChunkResult`; the worker does the reverse. This module
is pure (no runpod, no google-genai, no I/O) so the bot can import it; `tests/unit/test_layering.py` enforces it.
It is the bot's only door into the worker: the model catalogue (`worker.catalogue`: model names and aliases,
aspect ratios, image sizes, the seed range, limits and prices) is re-exported from here.

One RunPod job is one chunk: up to ~25 items of one Peel job (4 for a grid). Inputs and outputs travel as storage
keys, never as image bytes (RunPod caps `/run` input at 10 MB and drops oversized outputs silently).

Error-code tree of a failed item (`ItemError.code`):

    SAFETY        blocked by Gemini (prompt or image); never retried; Gemini still bills the prompt's input tokens
                  (and an image's output tokens when it blocks the image made), reported in `usage`
    BAD_INPUT     the request cannot succeed as asked (bad reference, unsupported option, 400/403/404); never retried
    TOO_LARGE     the item's images together make a request over Gemini's 20 MB limit (`worker.catalogue.
                  MAX_REQUEST_BYTES`): refused before any call; never retried (fewer or smaller images are needed)
    RATE_LIMITED  Gemini said 429 after the worker's own retries; retryable later, with a smaller budget
    UPSTREAM      5xx, timeout or connection failure after the worker's retries; retryable
    NO_IMAGE      Gemini answered without an image; retryable
    STORAGE       the store failed after the worker's retries (an image made was not written, or the chunk stopped
                  calling Gemini while the store was down); retryable
    CONFIG        Gemini refused the worker's key or does not know the configured model: an operator must fix the
                  deployment; not retried (the "Retry failed" button runs it again once fixed)
    UNAVAILABLE   set by the bot, never by a worker: the item never reached RunPod because the endpoint stayed
                  unreachable too long; not retried by itself, nothing was charged
    EXPIRED       set by the bot, never by a worker: a relax item whose Gemini batch ended `JOB_STATE_EXPIRED` (not done
                  within Gemini's 48 hours) or `JOB_STATE_FAILED`; not retried by itself (another batch may wait as
                  long), nothing was charged; "Retry failed" runs it again in either mode
    STOPPED       the worker found the job's stop marker (`stop_key`) before the item's Gemini call and did not make
                  it: the job was paused or cancelled. Nothing was charged; the bot puts it back to pending without
                  counting an attempt (paused) or leaves it cancelled

The stop marker is a convention of this contract, not a field: the bot writes an object under `stop_key(job_id)`
when it pauses or cancels a job and deletes it on resume, and the worker looks for it right before each Gemini
call (one HEAD, then none once seen). Being no field, it changes nothing on the wire: a worker older than it
accepts the same inputs and only stops later (when its chunk ends, or at RunPod's `/cancel`), and a bot older than
it writes no marker, so no worker ever sends it `STOPPED`.
"""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, model_validator

from worker.catalogue import (
    ASPECT_RATIOS_10,
    EXTREME_ASPECT_RATIOS,
    IMAGE_SIZES,
    MAX_SEED,
    MODEL_ALIASES,
    ImageSize,
    ModelSpec,
    TokenPrices,
    model_spec,
)

SCHEMA_VERSION: Literal[1] = 1
MAX_ITEMS_PER_CHUNK = 256
MAX_PROMPT_CHARS = 8000

# Storage keys as `storage.keys` validates them; the worker validates again when it opens them.
Key = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_][A-Za-z0-9/_.=-]*$")]
AspectRatio = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]?:[1-9][0-9]?$")]


class ErrorCode(StrEnum):
    """Why an item failed (see the module docstring)."""

    SAFETY = "SAFETY"
    BAD_INPUT = "BAD_INPUT"
    TOO_LARGE = "TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    UPSTREAM = "UPSTREAM"
    NO_IMAGE = "NO_IMAGE"
    STORAGE = "STORAGE"
    CONFIG = "CONFIG"
    UNAVAILABLE = "UNAVAILABLE"
    EXPIRED = "EXPIRED"
    STOPPED = "STOPPED"

    @property
    def is_retryable(self) -> bool:
        """Tell whether a later attempt at the same item can succeed."""
        return self in (
            ErrorCode.RATE_LIMITED,
            ErrorCode.UPSTREAM,
            ErrorCode.NO_IMAGE,
            ErrorCode.STORAGE,
            ErrorCode.STOPPED,
        )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EditSpec(_Model):
    """A conversational edit: the image being edited and the earlier instructions of its chain, oldest first."""

    source_key: Key
    history: list[Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)]] = Field(
        default_factory=list, max_length=50
    )


class RegionSpec(_Model):
    """Vary (Region): the part of the edit's source that may change, as fractions of its width and height.

    The worker sends the source, a copy with the region outlined and the region in words (Gemini has no mask
    parameter), then takes only the region, feathered inward, from the answer onto the source (`worker.region`).
    """

    left: float = Field(ge=0.0, le=1.0)
    top: float = Field(ge=0.0, le=1.0)
    right: float = Field(ge=0.0, le=1.0)
    bottom: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _not_empty(self) -> "RegionSpec":
        if self.right <= self.left or self.bottom <= self.top:
            raise ValueError("a region's right and bottom must be past its left and top")
        return self


class ChunkItem(_Model):
    """One image to make: prompt, references, options and where to write it.

    `region` (Vary (Region)) needs `edit`: the source is the image whose region changes. A worker older than the
    field refuses an item carrying it (the models forbid unknown fields), so the bot sends it only for that tool.
    """

    index: int = Field(ge=0)
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROMPT_CHARS)]
    ref_keys: list[Key] = Field(default_factory=list, max_length=14)
    aspect_ratio: AspectRatio | None = None
    image_size: ImageSize | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    output_key: Key
    edit: EditSpec | None = None
    region: RegionSpec | None = None

    @model_validator(mode="after")
    def _region_needs_source(self) -> "ChunkItem":
        if self.region is not None and self.edit is None:
            raise ValueError("a region needs the edit's source image")
        return self


class ChunkInput(_Model):
    """`input` of one RunPod job."""

    schema_: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    job_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    chunk: int = Field(ge=0)
    model: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._/-]+$")]
    concurrency: int = Field(default=4, ge=1, le=256)
    items: list[ChunkItem] = Field(min_length=1, max_length=MAX_ITEMS_PER_CHUNK)
    # None: images (left out of the payload, so a worker older than the field takes every image chunk);
    # "describe": each item's one reference is described in prompts (`DescribeAnswer`), see below.
    kind: Literal["describe"] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> dict[str, object]:
        """Return the JSON-able dict sent as RunPod's `input`."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class TokenUsage(_Model):
    """What Gemini reported billing for one item: the `usageMetadata` of its answers, summed over its attempts.

    Gemini bills tokens (https://ai.google.dev/gemini-api/docs/pricing): the prompt's (text and images), the
    answer's (`candidatesTokenCount`: the image and any text) and, for thinking models, the thoughts'
    (`thoughtsTokenCount`, outside the candidates' count). Images are priced apart from text, so the answer's image
    tokens are kept when Gemini gives them by modality (`candidatesTokensDetails`); None when it did not.
    (https://ai.google.dev/api/generate-content#UsageMetadata)
    """

    prompt_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    thoughts_tokens: int = Field(default=0, ge=0)
    image_output_tokens: int | None = Field(default=None, ge=0)

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        """Return the usage of both answers (an item's attempts are billed each)."""
        images = (
            None
            if self.image_output_tokens is None and other.image_output_tokens is None
            else (self.image_output_tokens or 0) + (other.image_output_tokens or 0)
        )
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            thoughts_tokens=self.thoughts_tokens + other.thoughts_tokens,
            image_output_tokens=images,
        )


def add_usage(first: TokenUsage | None, second: TokenUsage | None) -> TokenUsage | None:
    """Return the sum of two usages either of which may be unknown (None when both are)."""
    if first is None:
        return second
    return first if second is None else first + second


class ItemOk(_Model):
    """An item whose image is in the store under `key` (made now, or found there already: `skipped`).

    `usage` is what Gemini reported for the item's calls in this chunk (None for a skipped item, and from a worker
    older than the field).
    """

    index: int
    status: Literal["ok"] = "ok"
    key: Key
    width: int
    height: int
    skipped: bool = False
    note: str | None = None  # text Gemini sent along with the image
    usage: TokenUsage | None = None


class ItemError(_Model):
    """An item that failed; `retryable` is the worker's judgement from `code`.

    `usage` is what Gemini still billed for it: a blocked prompt's input tokens, an answer without an image, an
    image made but not stored. None when no answer came (an HTTP error, a refusal before any call).
    """

    index: int
    status: Literal["error"] = "error"
    code: ErrorCode
    message: str
    retryable: bool
    usage: TokenUsage | None = None


ItemResult = Annotated[ItemOk | ItemError, Field(discriminator="status")]


class ChunkProgress(_Model):
    """A `progress_update` payload: how many items are done and the results so far."""

    type: Literal["progress"] = "progress"
    done: int
    total: int
    results: list[ItemResult] = Field(default_factory=list)


class ChunkResult(_Model):
    """The worker's final output for a chunk."""

    schema_: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    type: Literal["result"] = "result"
    ok: int
    failed: int
    results: list[ItemResult]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> dict[str, object]:
        """Return the JSON-able dict the handler returns to RunPod."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


ChunkOutput = TypeAdapter(ChunkProgress | ChunkResult)

STOP_PREFIX = "control/"


def stop_key(job_id: str) -> str:
    """Return the store key of a job's stop marker: while it exists, workers start no Gemini call for the job."""
    return f"{STOP_PREFIX}{job_id}/stop"


# -- The self-test job (`python -m bot doctor`) ---------------------------------------------------------------------

SELFTEST_KIND: Literal["selftest"] = "selftest"
MAX_SELFTEST_MODELS = 10
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._/-]+$")]


class SelfTestInput(_Model):
    """`input` of a self-test job: prove the deployed worker speaks this contract, shares the store and reaches Gemini.

    A worker older than this kind refuses it as an invalid chunk (`BAD_INPUT`), which is how the bot tells an
    image that needs rebuilding.
    """

    kind: Literal["selftest"] = SELFTEST_KIND
    schema_: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    read_key: Key  # an object the bot wrote, for the worker to read
    write_key: Key  # where the worker writes `write_text`, for the bot to read back
    write_text: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    models: list[ModelName] = Field(default_factory=list, max_length=MAX_SELFTEST_MODELS)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> dict[str, object]:
        """Return the JSON-able dict sent as RunPod's `input`."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ModelProblem(StrEnum):
    """How a Gemini model check went, as the bot names the fix."""

    OK = "ok"
    KEY_REFUSED = "key_refused"  # 400 API_KEY_INVALID, 401, 403: GEMINI_API_KEY is wrong or lacks access
    UNKNOWN_MODEL = "unknown_model"  # 404: the model does not exist for this key
    UNREACHABLE = "unreachable"  # timeout, connection failure, 5xx, 429
    OTHER = "other"


class ModelCheck(_Model):
    """One model as the worker's Gemini key sees it; `detail` is the operator's short reason (no secrets)."""

    model: str
    problem: ModelProblem
    detail: str = ""


class SelfTestResult(_Model):
    """The worker's answer to a self-test: its contract version, what it read and wrote, each model's check.

    `read_text` is what the worker found under `read_key` (None with `read_error` when it could not read it);
    `wrote` says whether `write_text` was stored under `write_key` (`write_error` when not).
    """

    schema_: int = Field(default=SCHEMA_VERSION, alias="schema")  # the worker's: the bot compares it to its own
    type: Literal["selftest"] = SELFTEST_KIND
    read_text: str | None = None
    read_error: str | None = None
    wrote: bool = False
    write_error: str | None = None
    models: list[ModelCheck] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> dict[str, object]:
        """Return the JSON-able dict the handler returns to RunPod."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- Relax mode: Gemini's Batch API ------------------------------------------------------------------------------
#
# A relax batch's items go to Gemini in parts: one part is one Gemini batch job. The heavy bytes are the worker's
# (two RunPod job kinds); the cheap calls (create, get, list, cancel, delete) are the bot's.
#
#   relax_prepare  the worker writes the part's requests as JSONL (one line per item, `key` = the item's index),
#                  uploads each reference used by two or more items once through the Files API (lines name it by
#                  URI) and inlines the others, uploads the JSONL through the Files API and answers the file's name.
#                  Items it refuses (a missing reference, too large) come back as errors; items that did not fit
#                  `max_file_bytes` come back in neither list and go in a later part. It creates no batch: the bot
#                  does, after looking for one with the part's display name (`relax_display_name`), so a batch is
#                  never created twice for a part whatever dies when.
#   relax_collect  the worker streams the batch's result file line by line (never whole in memory), writes each
#                  image to its item's output key (an output already stored is skipped) and answers a `ChunkResult`
#                  (with `ChunkProgress` updates), each error mapped to the codes above as for a chunk.

RELAX_PREPARE_KIND: Literal["relax_prepare"] = "relax_prepare"
RELAX_COLLECT_KIND: Literal["relax_collect"] = "relax_collect"
MAX_RELAX_ITEMS = 2000  # items in one part (one Gemini batch job)
# Gemini's Batch API takes an input file up to 2 GB (ai.google.dev/gemini-api/docs/batch-mode, "Input file size
# limit"); the worker keeps a margin under it.
MAX_RELAX_FILE_BYTES = 1_900_000_000
FileName = Annotated[str, StringConstraints(min_length=7, max_length=200, pattern=r"^files/[a-z0-9-]+$")]


def relax_display_name(job_id: str, part: int) -> str:
    """Return the display name of a part's Gemini batch: Peel's job id and part, so it can be found again."""
    return f"peel-{job_id}-{part}"


class RelaxPrepareInput(_Model):
    """`input` of a relax_prepare job: write and upload one part's requests."""

    kind: Literal["relax_prepare"] = RELAX_PREPARE_KIND
    schema_: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    job_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    part: int = Field(ge=0)
    model: ModelName
    items: list[ChunkItem] = Field(min_length=1, max_length=MAX_RELAX_ITEMS)
    max_file_bytes: int = Field(default=MAX_RELAX_FILE_BYTES, ge=1, le=MAX_RELAX_FILE_BYTES)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> dict[str, object]:
        """Return the JSON-able dict sent as RunPod's `input`."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RelaxPrepareResult(_Model):
    """The worker's answer to relax_prepare.

    `file_name` is the uploaded JSONL (None when no item was written), `included` the items whose line it holds,
    `ref_files` the references uploaded once for the part (the bot deletes them with the file once collected),
    `results` the items refused before any call. An item in neither list did not fit: it goes in a later part.
    """

    schema_: int = Field(default=SCHEMA_VERSION, alias="schema")
    type: Literal["relax_prepared"] = "relax_prepared"
    file_name: FileName | None = None
    included: list[int] = Field(default_factory=list)
    ref_files: list[FileName] = Field(default_factory=list)
    file_bytes: int = Field(default=0, ge=0)
    results: list[ItemError] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> dict[str, object]:
        """Return the JSON-able dict the handler returns to RunPod."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RelaxCollectItem(_Model):
    """One item of a part to collect: its line's key is `str(index)`, its image goes to `output_key`.

    The rest is optional and only written into the PNG's text chunks, as a chunk's worker writes them (prompt, seed,
    options, references), so a relax image carries the same metadata as a fast one when the bot sends them.
    """

    index: int = Field(ge=0)
    output_key: Key
    prompt: Annotated[str, StringConstraints(max_length=MAX_PROMPT_CHARS)] | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    aspect_ratio: AspectRatio | None = None
    image_size: ImageSize | None = None
    ref_keys: list[Key] = Field(default_factory=list, max_length=14)
    edit_source: Key | None = None


class RelaxCollectInput(_Model):
    """`input` of a relax_collect job: stream a finished batch's result file into the store."""

    kind: Literal["relax_collect"] = RELAX_COLLECT_KIND
    schema_: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    job_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    part: int = Field(ge=0)
    model: ModelName
    result_file: FileName
    items: list[RelaxCollectItem] = Field(min_length=1, max_length=MAX_RELAX_ITEMS)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_payload(self) -> dict[str, object]:
        """Return the JSON-able dict sent as RunPod's `input`."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- Describe: an image in, prompts out (`/describe`) ------------------------------------------------------------
#
# A describe chunk is a `ChunkInput` with `kind="describe"` and `model` a text model (the bot's
# `GEMINI_DESCRIBE_MODEL`): each item's one reference key is the image to describe, its prompt the instruction.
# The worker asks the model for `DESCRIBE_PROMPTS` prompts as JSON, cleans them and writes a `DescribeAnswer` as
# JSON under `describe_key(output_key)`, answering `ItemOk` with that key and the image's size. It goes through the
# same queue, caps and budgets as an image; a worker older than the kind refuses the chunk (BAD_INPUT).

DESCRIBE_KIND: Literal["describe"] = "describe"
DESCRIBE_PROMPTS = 4
# A described prompt must fit /imagine's prompt option (1,500 characters) with its ` --ar W:H`, and Discord.
MAX_DESCRIBED_PROMPT_CHARS = 1400
DescribedPrompt = Annotated[str, StringConstraints(min_length=1, max_length=MAX_DESCRIBED_PROMPT_CHARS)]


class DescribeAnswer(_Model):
    """What a describe item writes to the store: the prompts and the described image's size and aspect ratio."""

    prompts: list[DescribedPrompt] = Field(min_length=DESCRIBE_PROMPTS, max_length=DESCRIBE_PROMPTS)
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    aspect_ratio: AspectRatio


def describe_key(output_key: str) -> str:
    """Return where a describe item's answer is written: its output key with `.describe.json` for the extension."""
    stem, dot, _ = output_key.rpartition(".")
    return f"{stem if dot else output_key}.describe.json"


def parse_top_level_error(error: str) -> tuple[ErrorCode | None, str]:
    """Split a worker's top-level `"CODE: message"` error into its code (None when unknown) and message."""
    code, sep, message = error.partition(":")
    if sep and code.strip() in ErrorCode.__members__:
        return ErrorCode(code.strip()), message.strip()
    return None, error.strip()


__all__ = [
    "ASPECT_RATIOS_10",
    "DESCRIBE_KIND",
    "DESCRIBE_PROMPTS",
    "EXTREME_ASPECT_RATIOS",
    "IMAGE_SIZES",
    "MAX_DESCRIBED_PROMPT_CHARS",
    "MAX_ITEMS_PER_CHUNK",
    "MAX_PROMPT_CHARS",
    "MAX_RELAX_FILE_BYTES",
    "MAX_RELAX_ITEMS",
    "MAX_SEED",
    "MAX_SELFTEST_MODELS",
    "MODEL_ALIASES",
    "RELAX_COLLECT_KIND",
    "RELAX_PREPARE_KIND",
    "SCHEMA_VERSION",
    "SELFTEST_KIND",
    "STOP_PREFIX",
    "AspectRatio",
    "ChunkInput",
    "ChunkItem",
    "ChunkOutput",
    "ChunkProgress",
    "ChunkResult",
    "DescribeAnswer",
    "DescribedPrompt",
    "EditSpec",
    "ErrorCode",
    "FileName",
    "ImageSize",
    "ItemError",
    "ItemOk",
    "ItemResult",
    "Key",
    "ModelCheck",
    "ModelProblem",
    "ModelSpec",
    "RegionSpec",
    "RelaxCollectInput",
    "RelaxCollectItem",
    "RelaxPrepareInput",
    "RelaxPrepareResult",
    "SelfTestInput",
    "SelfTestResult",
    "TokenPrices",
    "TokenUsage",
    "add_usage",
    "describe_key",
    "model_spec",
    "parse_top_level_error",
    "relax_display_name",
    "stop_key",
]
