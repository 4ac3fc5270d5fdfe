"""The google-genai adapter of the `ImageGenerator` port: request building, answer parsing, error mapping, retries.

Choices, with the evidence (google-genai's source and Google's API documentation):

* One `genai.Client` per generator, `api_version="v1beta"` pinned (SDK 3.x defaults to `v1`; every image
  sample uses `v1beta`) and SDK retries off (`HttpRetryOptions(attempts=1)`): the SDK's own retry ignores
  `google.rpc.RetryInfo.retryDelay`, does not retry timeouts, and without retry options it silently sleeps
  1-10 s and retries once on connection errors. This module retries instead, with jittered exponential
  backoff that never waits less than the server's `retryDelay`.
* `response_modalities=["IMAGE"]` by default (Google's advice for batch work: it suppresses the chatty text
  part that makes image-less answers likelier); `with_text=True` asks for TEXT too, kept as the note.
* Edits are one fresh single-turn request: the image being edited goes first as inline data, then the
  references, then one instruction composed of the chain's earlier instructions and the new one. A multi-turn
  request with the source image in a *model* turn is not possible here: Gemini-3 image models reject model
  turns whose parts lack the thought signatures of the answer that made them ("Image part is missing a
  thought_signature…"), and the worker keeps only the image, not the model's `Content`. The single-turn form
  works on every model, keeps the payload bounded and is what Google's edit samples do.
* The answer's image is the last non-thought inline image (Gemini-3 may send draft images flagged `thought`),
  and its format is sniffed from the bytes (gemini-3-pro-image has sent JPEG labelled `image/png`).
* Requests are checked against `worker.catalogue` before any call, so a refused option costs nothing; so is their
  size: online, images travel inline (base64), never through the Files API, so a request whose JSON would pass
  Gemini's 20 MB limit (`worker.catalogue.MAX_REQUEST_BYTES`) is refused as TOO_LARGE without calling Google.
* Relax mode (`worker.relax`) uses the same builder, check and answer reader (`request_json`, `check_request`,
  `parse_response_json`) and Gemini's Files API for the bytes of a batch (`upload_file`, `download_file`).
"""

import asyncio
import io
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.imageformat import sniff_image
from worker.catalogue import MAX_REQUEST_BYTES, model_spec
from worker.contract import ErrorCode, ModelCheck, ModelProblem, TokenUsage, add_usage
from worker.errors import GenerationError
from worker.generation import ChunkSink, GeneratedImage, GenerationRequest, InputImage, UploadedFile
from worker.region import region_instruction

log = logging.getLogger(__name__)

# Finish reasons that mean "blocked": terminal, never retried (research §1.3).
BLOCKED_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "PUP_LIMITED_DISABLED",
    }
)
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")

Sleep = Callable[[float], Awaitable[None]]


class GeminiSettings(BaseSettings):
    """The worker's Gemini settings, from `GEMINI_*` variables (or `.env`)."""

    model_config = SettingsConfigDict(env_prefix="GEMINI_", env_file=".env", extra="ignore")

    api_key: SecretStr = Field(description="a Gemini API key from Google AI Studio (required)")
    base_url: str | None = Field(
        default=None, description="a Gemini API proxy or the local server, http://127.0.0.1:8765; unset: Google's"
    )
    model: str = Field(
        default="gemini-2.5-flash-image",
        description="not read: every chunk names its model (the bot's GEMINI_MODEL chooses)",
    )
    timeout_s: float = Field(default=120.0, description="the longest one Gemini call may take, in seconds")
    max_attempts: int = Field(default=4, description="attempts per image for retryable Gemini errors (429, 5xx)")
    backoff_base_s: float = Field(default=2.0, description="the first retry's delay, doubled on each further one")
    backoff_cap_s: float = Field(default=60.0, description="the longest delay between two attempts")


def retry_delay_of(error: genai_errors.APIError) -> float | None:
    """Return the `google.rpc.RetryInfo.retryDelay` of an error answer in seconds, or None when it has none."""
    body = error.details if isinstance(error.details, dict) else {}
    inner = body.get("error", body)
    details = inner.get("details") if isinstance(inner, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def sniff_mime(data: bytes) -> str | None:
    """Return the MIME type the bytes really are (PNG, JPEG or WebP), or None."""
    fmt = sniff_image(data[:32])
    return fmt.content_type if fmt is not None else None


def edit_instruction(history: Sequence[str], prompt: str, *, references: int) -> str:
    """Compose the one instruction of an edit: the chain's earlier instructions, then the new change."""
    lines = ["Edit the first image."]
    if history:
        lines.append("It was made by following these instructions, oldest first:")
        lines.extend(f"{i}. {step}" for i, step in enumerate(history, start=1))
    if references:
        lines.append("The other images are references for the change.")
    lines.append(f"Now make this change and keep everything else as it is: {prompt}")
    return "\n".join(lines)


def instruction_of(request: GenerationRequest) -> str:
    """Return the text part of a request: the prompt, or the edit's (or region edit's) composed instruction."""
    if request.edit_source is None:
        return request.prompt
    if request.region is not None:  # references[0] is the outlined copy, the others the user's references
        return region_instruction(request.prompt, request.region, references=len(request.references) - 1)
    return edit_instruction(request.history, request.prompt, references=len(request.references))


def build_contents(request: GenerationRequest) -> list[types.Content]:
    """Return the request's `contents`: one user turn of text and inline images.

    A prompt goes before its references; an edit's source goes first and its instruction last (Google's edit
    samples), a region edit's outlined copy second (`worker.region`).
    """
    refs = [_part(image) for image in request.references]
    text = types.Part.from_text(text=instruction_of(request))
    parts = [text, *refs] if request.edit_source is None else [_part(request.edit_source), *refs, text]
    return [types.Content(role="user", parts=parts)]


# What a request's JSON holds besides its text and images (the envelope, `generationConfig`, each part's keys and
# MIME type): counted generously, so the estimate below is never under the real body.
_REQUEST_OVERHEAD_BYTES = 4096
_PART_OVERHEAD_BYTES = 128


def request_bytes(request: GenerationRequest) -> int:
    """Return an upper bound of the generateContent body's size for `request`, in bytes.

    Each image is base64 in the JSON (4 bytes per 3) and each text a JSON string (escapes counted by encoding it).
    """
    images = [*request.references, *([request.edit_source] if request.edit_source is not None else [])]
    text = instruction_of(request)
    size = _REQUEST_OVERHEAD_BYTES + len(json.dumps(text).encode())
    return size + sum(4 * -(-image.inline_bytes // 3) + _PART_OVERHEAD_BYTES for image in images)


def _part(image: InputImage) -> types.Part:
    if image.file_uri is not None:
        return types.Part.from_uri(file_uri=image.file_uri, mime_type=image.mime_type)
    return types.Part.from_bytes(data=image.data, mime_type=image.mime_type)


def check_request(request: GenerationRequest) -> GenerationError | None:
    """Return why Gemini would refuse `request` before any call (BAD_INPUT, TOO_LARGE), or None when it would not.

    Both modes decide alike: the size is the request's with every image inline (the online call's form), so an item
    refused in one mode is refused in the other and "Retry failed" in either mode sees the same items.
    """
    spec = model_spec(request.model)
    problem = spec.check(
        references=len(request.references),
        aspect_ratio=request.aspect_ratio,
        image_size=request.image_size,
        edit=request.edit_source is not None,
    )
    if problem is not None:
        return GenerationError(ErrorCode.BAD_INPUT, problem)
    if (size := request_bytes(request)) > MAX_REQUEST_BYTES:
        return GenerationError(
            ErrorCode.TOO_LARGE,
            f"the request would be about {size:,} bytes with its images inline, over Gemini's "
            f"{MAX_REQUEST_BYTES:,}-byte limit",
        )
    return None


def request_json(request: GenerationRequest, *, with_text: bool = False) -> dict[str, Any]:
    """Return `request` as the REST `GenerateContentRequest` a Batch API input line holds (camelCase, base64 images).

    The same `contents` and config the online call sends (`build_contents`, `build_config`), dumped in the API's JSON
    form: `{"contents": [...], "generationConfig": {...}}` (https://ai.google.dev/api/generate-content#request-body,
    https://ai.google.dev/gemini-api/docs/batch-mode#input-file). The model is the batch's, not the line's.
    """
    contents = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in build_contents(request)]
    config = build_config(request, with_text=with_text).model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"contents": contents, "generationConfig": config}


def build_config(request: GenerationRequest, *, with_text: bool) -> types.GenerateContentConfig:
    """Return the generation config: modalities, aspect ratio, image size (where accepted) and seed."""
    spec = model_spec(request.model)
    image_size = request.image_size
    if image_size is not None and not spec.takes_image_size:
        image_size = None  # the default size, which `check` let through; the model refuses the field itself
    return types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"] if with_text else ["IMAGE"],
        image_config=types.ImageConfig(aspect_ratio=request.aspect_ratio, image_size=image_size),
        seed=request.seed,
    )


def usage_of(response: types.GenerateContentResponse) -> TokenUsage | None:
    """Return what an answer's `usageMetadata` says Gemini bills for it, or None when it has none.

    The fields are the API's (https://ai.google.dev/api/generate-content#UsageMetadata): `promptTokenCount` (text and
    images sent), `candidatesTokenCount` (the answer), `thoughtsTokenCount` (a thinking model's thoughts, counted
    apart) and `candidatesTokensDetails`, the answer's tokens by modality, whose IMAGE entry is priced as image output
    (https://ai.google.dev/gemini-api/docs/pricing). A blocked prompt's answer has usage too: its input is billed.
    """
    meta = response.usage_metadata
    if meta is None:
        return None
    details = meta.candidates_tokens_details
    images = (
        None
        if details is None
        else sum(d.token_count or 0 for d in details if _enum_name(d.modality) == types.MediaModality.IMAGE.value)
    )
    return TokenUsage(
        prompt_tokens=max(0, meta.prompt_token_count or 0),
        output_tokens=max(0, meta.candidates_token_count or 0),
        thoughts_tokens=max(0, meta.thoughts_token_count or 0),
        image_output_tokens=None if images is None else max(0, images),
    )


def parse_response(response: types.GenerateContentResponse) -> GeneratedImage:
    """Take the final image out of an answer, with the usage it reports.

    Raises:
        GenerationError: SAFETY when the prompt or image was blocked, NO_IMAGE when there is no image,
            UPSTREAM when the image bytes are not an image; each with the answer's usage (Gemini billed it).
    """
    usage = usage_of(response)
    try:
        image = _image_of(response)
    except GenerationError as exc:
        exc.usage = add_usage(exc.usage, usage)
        raise
    return GeneratedImage(data=image.data, mime_type=image.mime_type, note=image.note, usage=usage)


def _image_of(response: types.GenerateContentResponse) -> GeneratedImage:
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _enum_name(feedback.block_reason)
        detail = f" ({feedback.block_reason_message})" if feedback.block_reason_message else ""
        raise GenerationError(ErrorCode.SAFETY, f"Gemini blocked the prompt: {reason}{detail}")
    if not response.candidates:
        raise GenerationError(ErrorCode.NO_IMAGE, "Gemini answered without a candidate")
    candidate = response.candidates[0]
    finish = _enum_name(candidate.finish_reason) if candidate.finish_reason is not None else None
    parts = candidate.content.parts if candidate.content is not None and candidate.content.parts else []
    images = [p.inline_data for p in parts if p.inline_data is not None and p.inline_data.data and not p.thought]
    note = "".join(p.text for p in parts if p.text and not p.thought).strip() or None
    if not images:
        if finish in BLOCKED_FINISH_REASONS:
            raise GenerationError(ErrorCode.SAFETY, f"Gemini blocked the image: {finish}")
        said = f": {note[:200]}" if note else ""
        raise GenerationError(ErrorCode.NO_IMAGE, f"Gemini answered without an image (finish reason {finish}){said}")
    data = images[-1].data
    assert data is not None  # filtered above
    mime = sniff_mime(data)
    if mime is None:
        raise GenerationError(ErrorCode.UPSTREAM, f"Gemini's image is not PNG, JPEG or WebP ({len(data)} bytes)")
    return GeneratedImage(data=data, mime_type=mime, note=note)


# A 1x1 PNG, and an answer carrying it, as `warm_up` builds them (never sent anywhere).
_WARM_UP_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
_WARM_UP_MODEL = "gemini-2.5-flash-image"
_WARM_UP_ANSWER = {
    "candidates": [
        {
            "content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": _WARM_UP_PNG}}]},
            "finishReason": "STOP",
        }
    ],
    "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1},
}


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


# What one call can fail with; anything else is a bug and propagates.
_FAILURES = (
    GenerationError,
    genai_errors.APIError,
    TimeoutError,
    aiohttp.ClientError,
    pydantic.ValidationError,
    json.JSONDecodeError,
)


def refuses_configuration(exc: genai_errors.APIError) -> bool:
    """Tell whether Gemini refused the deployment (its key, project or model) rather than this one request.

    Gemini's documented errors (ai.google.dev/gemini-api/docs/troubleshooting): 400 INVALID_ARGUMENT whose
    ErrorInfo reason is `API_KEY_INVALID` ("API key not valid"), 400 FAILED_PRECONDITION (the free tier is not
    available here: billing must be enabled), 401, 403 PERMISSION_DENIED (the key lacks access), and 404 NOT_FOUND
    (`models/… is not found`: an online call sends its images inline, so a 404 names the model). Only
    an operator can fix these; every item would fail alike, so they are not the request's fault (BAD_INPUT).
    """
    if exc.code in (401, 403, 404):
        return True
    if exc.code == 400 and exc.status == "FAILED_PRECONDITION":
        return True
    return exc.code == 400 and "API_KEY_INVALID" in _error_reasons(exc.details)


def _error_reasons(details: object) -> set[str]:
    """Return the `reason`s of a Google API error body's ErrorInfo details (`{"error": {"details": [...]}}`)."""
    error = details.get("error") if isinstance(details, dict) else None
    listed = error.get("details") if isinstance(error, dict) else None
    if not isinstance(listed, list):
        return set()
    return {str(d["reason"]) for d in listed if isinstance(d, dict) and "reason" in d}


def classify(exc: BaseException) -> GenerationError:
    """Translate an SDK or transport failure (one of `_FAILURES`) into the contract's error."""
    if isinstance(exc, GenerationError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        what = f"Gemini answered {exc.code} {exc.status or ''}: {exc.message or ''}".strip()
        if exc.code == 429:
            return GenerationError(ErrorCode.RATE_LIMITED, what, retry_after_s=retry_delay_of(exc))
        if exc.code in RETRYABLE_HTTP or exc.code >= 500 or isinstance(exc, genai_errors.ServerError):
            return GenerationError(ErrorCode.UPSTREAM, what)
        if refuses_configuration(exc):
            return GenerationError(ErrorCode.CONFIG, what)
        return GenerationError(ErrorCode.BAD_INPUT, what)
    if isinstance(exc, TimeoutError):
        return GenerationError(ErrorCode.UPSTREAM, "Gemini did not answer in time")
    if isinstance(exc, aiohttp.ClientError):
        # Its text names the endpoint's host and port and reprs the SSL context: that goes to the log only.
        return GenerationError(ErrorCode.UPSTREAM, f"Gemini unreachable: {type(exc).__name__}")
    if isinstance(exc, pydantic.ValidationError | json.JSONDecodeError):
        # The SDK raises json.JSONDecodeError for a body that is not JSON and pydantic's
        # ValidationError for JSON of the wrong shape; both mean a broken answer, not a broken request.
        return GenerationError(ErrorCode.UPSTREAM, f"Gemini's answer is malformed: {type(exc).__name__}")
    return GenerationError(ErrorCode.UPSTREAM, f"Gemini call failed: {type(exc).__name__}")


# google.rpc.Code: the number and name of each status, and the HTTP status the API answers it with online
# (https://cloud.google.com/apis/design/errors#handling_errors, "Error codes"). A batch result line's `error` is such
# a Status (https://ai.google.dev/gemini-api/docs/batch-mode#retrieving-results: "each line is either a
# GenerateContentResponse or a status object").
_RPC_CODES: dict[int, tuple[str, int]] = {
    1: ("CANCELLED", 499),
    2: ("UNKNOWN", 500),
    3: ("INVALID_ARGUMENT", 400),
    4: ("DEADLINE_EXCEEDED", 504),
    5: ("NOT_FOUND", 404),
    6: ("ALREADY_EXISTS", 409),
    7: ("PERMISSION_DENIED", 403),
    8: ("RESOURCE_EXHAUSTED", 429),
    9: ("FAILED_PRECONDITION", 400),
    10: ("ABORTED", 409),
    11: ("OUT_OF_RANGE", 400),
    12: ("UNIMPLEMENTED", 501),
    13: ("INTERNAL", 500),
    14: ("UNAVAILABLE", 503),
    15: ("DATA_LOSS", 500),
    16: ("UNAUTHENTICATED", 401),
}
_RPC_HTTP = dict(_RPC_CODES.values())


def classify_status(status: object) -> GenerationError:
    """Translate a batch result line's `error` (a google.rpc.Status) into the contract's error, as `classify` does.

    The Status is read as the online call's error answer with the same status (its gRPC code given as HTTP), so both
    modes map alike. One exception: a line's 401/403/404 is no deployment fault, as it is online, since the batch
    that ran it was created with the same key and model; it names something the line refers to (an uploaded
    reference that expired), and is UPSTREAM: the item can succeed in a new batch.
    """
    body = status if isinstance(status, dict) else {}
    code, name = body.get("code"), body.get("status")
    if not isinstance(name, str) and isinstance(code, int) and code in _RPC_CODES:
        name = _RPC_CODES[code][0]
    http = _RPC_HTTP.get(name, 500) if isinstance(name, str) else 500
    message = str(body.get("message") or "")
    if http in (401, 403, 404):
        return GenerationError(ErrorCode.UPSTREAM, f"Gemini's batch answered {name} for this item: {message}".strip())
    error = genai_errors.APIError(http, {"error": {"code": http, "status": name, "message": message, **_details(body)}})
    return classify(error)


def _details(status: dict[str, Any]) -> dict[str, Any]:
    details = status.get("details")
    return {"details": details} if isinstance(details, list) else {}


def parse_response_json(response: object) -> GeneratedImage:
    """Take the final image out of an answer in the API's JSON form (a batch result line's `response`).

    The SDK's own reading of an online answer (`GenerateContentResponse._from_response`: fields it does not know
    dropped, base64 decoded), then `parse_response`, so both modes judge an answer alike.

    Raises:
        GenerationError: as `parse_response`; UPSTREAM when the answer is not a GenerateContentResponse.
    """
    if not isinstance(response, dict):
        raise GenerationError(ErrorCode.UPSTREAM, "Gemini's batch answer is malformed: not an object")
    try:
        parsed = types.GenerateContentResponse._from_response(response=response, kwargs={})
    except (pydantic.ValidationError, ValueError) as exc:
        raise GenerationError(ErrorCode.UPSTREAM, f"Gemini's batch answer is malformed: {type(exc).__name__}") from exc
    return parse_response(parsed)


def _model_problem(exc: BaseException) -> ModelProblem:
    """Name what a failed `models.get` says about the settings."""
    if isinstance(exc, genai_errors.APIError):
        if exc.code in (401, 403) or (exc.code == 400 and "API_KEY_INVALID" in json.dumps(exc.details, default=str)):
            return ModelProblem.KEY_REFUSED
        if exc.code == 404:
            return ModelProblem.UNKNOWN_MODEL
        if exc.code == 429 or exc.code >= 500:
            return ModelProblem.UNREACHABLE
        return ModelProblem.OTHER
    if isinstance(exc, TimeoutError | aiohttp.ClientError):
        return ModelProblem.UNREACHABLE
    return ModelProblem.OTHER


class _AsyncSink(io.IOBase):
    """A writable the SDK's download awaits (`_api_client.async_download_file` awaits what `write` returns)."""

    def __init__(self, sink: ChunkSink) -> None:
        super().__init__()
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, chunk: bytes) -> Awaitable[None]:
        return self._sink(chunk)


class GeminiImageGenerator:
    """Generates images with Gemini through google-genai's async client, retrying transient failures.

    Args:
        api_key: the Gemini API key (never logged).
        base_url: another endpoint than Google's (the local server); None for Google.
        timeout_s: the deadline of one HTTP call.
        max_attempts: calls per image, the first included, for retryable failures.
        backoff_base_s: the first backoff; it doubles per attempt, with jitter (x0.5-1.5).
        backoff_cap_s: the longest backoff; a server `retryDelay` above it ends the retries at once
            (RATE_LIMITED with `retry_after_s`), so a worker does not sit on a long quota wait.
        no_image_retries: extra attempts for an answer without an image (within `max_attempts`).
        with_text: ask for TEXT as well as IMAGE; the text becomes `GeneratedImage.note`.
        sleep: awaited for each backoff (tests pass a recorder).
        rng: the jitter's source.
        transfer_timeout_s: the deadline of one Files API upload or download (a relax part's JSONL or results
            can be gigabytes, far longer than a call).
        http: the aiohttp session the SDK sends through (the caller closes it); None makes one on first use,
            closed by `aclose`. Passing a session also keeps the SDK from subclassing `aiohttp.ClientSession`,
            which aiohttp deprecates (a DeprecationWarning per client).
    """

    def __init__(
        self,
        *,
        api_key: SecretStr | str,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        max_attempts: int = 4,
        backoff_base_s: float = 2.0,
        backoff_cap_s: float = 60.0,
        no_image_retries: int = 1,
        with_text: bool = False,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        http: aiohttp.ClientSession | None = None,
        transfer_timeout_s: float = 3600.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._base_url = base_url or None
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._no_image_retries = no_image_retries
        self._with_text = with_text
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not a secret
        self._http = http
        self._transfer_timeout_s = transfer_timeout_s
        self._owned_http: aiohttp.ClientSession | None = None
        self._client: genai.Client | None = None
        self._client_lock = asyncio.Lock()

    async def _genai(self) -> genai.Client:
        """Return the SDK client, building it (and a session, if none was given) on first use.

        The SDK's constructor does blocking work (it builds sync httpx clients: SSL contexts, package metadata
        reads), so it runs in a thread; the aiohttp session is made here, in the loop that will use it.
        """
        async with self._client_lock:
            if self._client is None:
                http = self._http
                if http is None:
                    # Like the SDK's own session (no connection cap; the handler bounds concurrency), minus
                    # trust_env, whose ~/.netrc lookup is blocking file I/O on the loop.
                    http = self._owned_http = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0), read_bufsize=2**22
                    )
                options = types.HttpOptions(
                    api_version="v1beta",
                    base_url=self._base_url,
                    timeout=max(1, round(self._timeout_s * 1000)),
                    retry_options=types.HttpRetryOptions(attempts=1),
                    aiohttp_client=http,
                )
                self._client = await asyncio.to_thread(
                    genai.Client, api_key=self._api_key.get_secret_value(), http_options=options
                )
            return self._client

    @classmethod
    def from_settings(cls, settings: GeminiSettings, **kwargs: Any) -> Self:
        """Build a generator from `GeminiSettings`; keyword arguments are passed on (sleep, rng, with_text…)."""
        return cls(
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout_s=settings.timeout_s,
            max_attempts=settings.max_attempts,
            backoff_base_s=settings.backoff_base_s,
            backoff_cap_s=settings.backoff_cap_s,
            **kwargs,
        )

    async def aclose(self) -> None:
        """Close the SDK client and the session this generator made (not one it was given)."""
        if self._client is not None:
            await self._client.aio.aclose()
            self._client = None
        if self._owned_http is not None:
            await self._owned_http.close()
            self._owned_http = None

    async def warm_up(self) -> None:
        """Make the first image as quick as the next: build the SDK client and its models now, calling nothing.

        The first call otherwise also builds the client (in a thread, ~0.2 s) and pydantic's validators for the
        request and answer types (~0.07 s), while it holds a slot of the budget.
        """
        await self._genai()
        request = GenerationRequest(
            model=_WARM_UP_MODEL,
            prompt="warm-up",
            references=(InputImage(data=_WARM_UP_PNG, mime_type="image/png"),),
            aspect_ratio="1:1",
            seed=1,
        )
        build_contents(request)
        build_config(request, with_text=self._with_text)
        parse_response(types.GenerateContentResponse.model_validate(_WARM_UP_ANSWER))

    async def __aenter__(self) -> Self:
        await self._genai()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def backoff_s(self, attempt: int, server_delay_s: float | None = None) -> float:
        """Return the wait after failed attempt `attempt` (1-based): jittered exponential, at least the server's."""
        backoff = min(self._backoff_cap_s, self._backoff_base_s * 2.0 ** (attempt - 1)) * (0.5 + self._rng.random())
        return max(backoff, server_delay_s or 0.0)

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Generate the image `request` asks for.

        Raises:
            GenerationError: BAD_INPUT before any call when the model would refuse the request, TOO_LARGE when its
                images would make it too large for Gemini; SAFETY when Gemini blocked it (never retried);
                RATE_LIMITED, UPSTREAM or NO_IMAGE once the retries are spent.
        """
        refused = check_request(request)
        if refused is not None:
            raise refused
        contents = build_contents(request)
        config = build_config(request, with_text=self._with_text)
        log.debug("generate %s: %.80r", request.model, request.prompt)
        no_image_left = self._no_image_retries
        attempt = 0
        billed: TokenUsage | None = None  # every answer is billed, the attempts that failed too
        while True:
            attempt += 1
            try:
                response = await self._call(request.model, contents, config)
                image = parse_response(response)
            except _FAILURES as exc:
                error = classify(exc)
                cause = None if error is exc else exc
                billed = add_usage(billed, error.usage)
                error.usage = billed
                if cause is not None:
                    log.info("gemini %s attempt %d: %s: %s", request.model, attempt, type(exc).__name__, exc)
                if error.code is ErrorCode.NO_IMAGE:
                    if no_image_left <= 0:
                        raise error from cause
                    no_image_left -= 1
                if not error.retryable or attempt >= self._max_attempts:
                    raise error from cause
                if error.retry_after_s is not None and error.retry_after_s > self._backoff_cap_s:
                    raise error from cause
                delay = self.backoff_s(attempt, error.retry_after_s)
                log.warning(
                    "gemini %s attempt %d failed (%s), retrying in %.2fs",
                    request.model,
                    attempt,
                    error.code,
                    delay,
                    extra={"action": "retry", "code": str(error.code)},
                )
                await self._sleep(delay)
                continue
            return GeneratedImage(
                data=image.data,
                mime_type=image.mime_type,
                note=image.note,
                attempts=attempt,
                usage=add_usage(billed, image.usage),
            )

    async def upload_file(self, path: Path, *, mime_type: str, display_name: str) -> UploadedFile:
        """Upload a file from disk through the Files API (the SDK's resumable upload, read from disk in chunks).

        Raises:
            GenerationError: the upload failed (classified as a call is: 429, 5xx, timeout, a refused key).
        """
        config = types.UploadFileConfig(
            mime_type=mime_type,
            display_name=display_name,
            http_options=types.HttpOptions(timeout=max(1, round(self._transfer_timeout_s * 1000))),
        )
        try:
            client = await self._genai()
            # Given a path, the SDK reads it in 8 MiB chunks through anyio (in threads), after one os.stat for
            # its size: the loop never waits on the disk for more than that.
            made = await client.aio.files.upload(file=path, config=config)
        except _FAILURES as exc:
            raise classify(exc) from exc
        if not made.name or not made.uri:
            raise GenerationError(ErrorCode.UPSTREAM, "Gemini's Files API answered an upload without a name or URI")
        return UploadedFile(name=made.name, uri=made.uri)

    async def download_file(self, name: str, sink: ChunkSink) -> None:
        """Stream a generated file (a batch's results) into `sink`, 1 MiB at a time, never whole in memory.

        The SDK's own download (`files.download` with a destination: `GET {version}/files/{id}:download?alt=media`,
        its chunks awaited one by one), so the next chunk is read only once `sink` has taken this one.

        Raises:
            GenerationError: the download failed (UPSTREAM when the file is gone); what `sink` raises propagates.
        """
        config = types.DownloadFileConfig(
            http_options=types.HttpOptions(timeout=max(1, round(self._transfer_timeout_s * 1000)))
        )
        try:
            client = await self._genai()
            await client.aio.files.download(file=name, destination=_AsyncSink(sink), config=config)
        except genai_errors.APIError as exc:
            if exc.code in (403, 404):
                # Google answers 403 for a file that does not exist or expired (ai.google.dev/api/files): the
                # results are gone, which says nothing of the key, unlike a refused call (`refuses_configuration`).
                raise GenerationError(
                    ErrorCode.UPSTREAM, f"{name} is not there (deleted, or past its 48 hours)"
                ) from exc
            raise classify(exc) from exc
        except _FAILURES as exc:
            raise classify(exc) from exc

    async def delete_file(self, name: str) -> None:
        """Delete an uploaded file (best effort: Gemini deletes it after 48 hours anyway)."""
        try:
            client = await self._genai()
            await client.aio.files.delete(name=name)
        except _FAILURES as exc:
            log.info("deleting %s failed: %s", name, classify(exc).message)

    async def check_model(self, model: str, *, timeout_s: float = 10.0) -> ModelCheck:
        """Look `model` up with this key (`models.get`, no image made, nothing billed), once, without retries.

        Gemini answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID, and a key without access
        with 403; an unknown model is 404 (https://ai.google.dev/api/models#method:-models.get,
        https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes).
        """
        try:
            async with asyncio.timeout(timeout_s):
                client = await self._genai()
                await client.aio.models.get(model=model)
        except _FAILURES as exc:
            return ModelCheck(model=model, problem=_model_problem(exc), detail=classify(exc).message[:200])
        return ModelCheck(model=model, problem=ModelProblem.OK)

    async def call_model(
        self, model: str, contents: list[types.Content], config: types.GenerateContentConfig
    ) -> types.GenerateContentResponse:
        """Make one generateContent call of any model (a text model, for the describe job kind), without retries.

        Raises:
            GenerationError: the call failed, classified as an image call's failure is.
        """
        try:
            return await self._call(model, contents, config)
        except _FAILURES as exc:
            raise (exc if isinstance(exc, GenerationError) else classify(exc)) from exc

    async def _call(
        self, model: str, contents: list[types.Content], config: types.GenerateContentConfig
    ) -> types.GenerateContentResponse:
        # The SDK's own timeout covers the HTTP exchange; this one also bounds connecting and parsing.
        async with asyncio.timeout(self._timeout_s + 5):
            client = await self._genai()
            return await client.aio.models.generate_content(model=model, contents=contents, config=config)
