"""A local Gemini-compatible image server: the embedded default when no `GEMINI_API_KEY` is configured.

It speaks the Gemini Developer API's REST JSON (`generativelanguage.googleapis.com`) closely enough for the
unmodified google-genai SDK, and it *draws* its answers: a deterministic picture of the prompt, seed and
reference images (a palette from a hash of the prompt and seed, shapes placed by the seed, the references
tinting the palette and shown as thumbnails along the bottom), in the exact pixel size the real model would use
for the requested aspect ratio and image size (`worker.catalogue`). Faults (latency, 429s, 5xx, safety blocks,
malformed or image-less answers) come from the environment or the admin endpoints.

Routes:

    POST /{v1|v1beta|v1alpha}/models/{model}:generateContent   the API (SDK 3.x defaults to v1, Peel pins v1beta)
    GET  /stats                 {"requests", "in_flight", "max_in_flight", "errors_injected", "blocked",
                                 "images", "rejected", "unauthorized"}
    GET  /admin/faults          the current faults (the JSON below)
    POST /admin/faults          merge a JSON object of faults into the current ones; answers the result
    POST /admin/reset           zero /stats, forget scripted faults, restore the faults the server started with
    GET  /admin/requests        the last requests received (model, prompt excerpt, images, options; no bytes)

`POST /admin/faults` body (every field optional):

    {"latency": 0.5 | "0.2-1.5" | [0.2, 1.5],   seconds before each answer (fixed or uniform range)
     "rate_429": 0.1, "rate_5xx": 0.05,          shares of answers that fail at random (LOCAL_GEMINI_FAULT_SEED)
     "next_429": 2, "retry_delay_s": 7,          the next N answers are 429 with google.rpc.RetryInfo retryDelay
     "next_5xx": 3, "status_5xx": 503,           the next N answers are 5xx (500 and 503 alternate unless given)
     "block_word": "forbidden",                  prompts containing it (any case) are safety-blocked (HTTP 200)
     "block_image_sha256": ["ab12…"],            requests with a reference image of one of these SHA-256s
                                                 (hex of its bytes) are safety-blocked: per-item blocks in a
                                                 batch, where every item shares one prompt
     "block_as": "auto" | "prompt" | "image",    promptFeedback.blockReason PROHIBITED_CONTENT, finishReason
                                                 IMAGE_SAFETY, or "auto": chosen by a hash of the prompt
     "next_malformed": 1, "malformed": "json" | "structure",   invalid JSON, or a 200 of the wrong shape
     "next_no_image": 1, "no_image_reason": "NO_IMAGE" | "STOP",   a text-only answer
     "next_mislabel": 1,                         JPEG bytes labelled image/png (seen live, python-genai#1824)
     "thoughts": true}                           gemini-3* models always add thought parts and a draft image
                                                 (otherwise only when thinkingConfig.includeThoughts)

Scripted faults ("next N") apply in this order: 429, 5xx, malformed, no image; then the random shares, then
the blocks (word, then reference hashes). Injected 429/5xx/malformed/no-image answers count in
`errors_injected`, blocks in `blocked`.

Environment (the standalone server and `LocalGemini.from_env`):

    LOCAL_GEMINI_API_KEY      the one accepted key (default: any non-empty key is accepted)
    LOCAL_GEMINI_DRAW_PX      draw small: longest side N px, same aspect (benchmarks); default the real size
    LOCAL_GEMINI_LATENCY      "0.5" or "0.2-1.5" seconds
    LOCAL_GEMINI_RATE_429     share 0-1 of answers that are 429
    LOCAL_GEMINI_RATE_5XX     share 0-1 of answers that are 500/503
    LOCAL_GEMINI_RETRY_DELAY  the retryDelay of 429 answers, seconds (default 1)
    LOCAL_GEMINI_BLOCK_WORD   prompts containing it are safety-blocked
    LOCAL_GEMINI_FAULT_SEED   seeds the random fault draws and the latency range

Not implemented: streamGenerateContent, batchGenerateContent, countTokens, models.get/list, the Files API and
thought-signature checks on replayed model turns (the worker sends single-turn requests only).

Run standalone: `python -m worker.local_gemini --port 8765 [--host 127.0.0.1] [--api-key K]`, then point the
worker at it with `GEMINI_BASE_URL=http://127.0.0.1:8765`. Embedded: `async with LocalGemini(port=0) as g:`
and use `g.url`.
"""

import argparse
import asyncio
import base64
import binascii
import hashlib
import io
import json
import logging
import os
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from types import TracebackType
from typing import Any, Literal, Self, cast

from aiohttp import web
from PIL import Image, ImageDraw, ImageFont

from storage.imageformat import sniff_image
from worker.catalogue import IMAGE_SIZES, ModelSpec, model_spec

log = logging.getLogger(__name__)

API_VERSIONS = frozenset({"v1", "v1beta", "v1alpha"})
INPUT_MIME = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
MAX_INLINE_IMAGE_BYTES = 7 * 1024 * 1024
DEFAULT_RETRY_DELAY_S = 1.0
REQUEST_LOG_SIZE = 200

BlockAs = Literal["auto", "prompt", "image"]
MalformedKind = Literal["json", "structure"]
NoImageReason = Literal["NO_IMAGE", "STOP"]
JsonObject = dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# Faults and statistics
# ---------------------------------------------------------------------------------------------------------------


def parse_latency(value: object) -> tuple[float, float]:
    """Parse a latency: a number, "0.5", "0.2-1.5" or [0.2, 1.5] → (low, high) seconds.

    Raises:
        ValueError: the value is none of those, or negative, or its range is reversed.
    """
    if isinstance(value, bool):
        raise ValueError(f"latency must be seconds, got {value!r}")
    if isinstance(value, int | float):
        low = high = float(value)
    elif isinstance(value, str):
        text = value.strip()
        low_s, sep, high_s = text.partition("-")
        try:
            low = float(low_s)
            high = float(high_s) if sep else low
        except ValueError:
            raise ValueError(f"latency must be seconds or 'LOW-HIGH', got {value!r}") from None
    elif isinstance(value, list | tuple) and len(value) == 2:
        low, high = float(value[0]), float(value[1])
    else:
        raise ValueError(f"latency must be seconds, 'LOW-HIGH' or [LOW, HIGH], got {value!r}")
    if low < 0 or high < low:
        raise ValueError(f"latency range {low}-{high} is not valid")
    return low, high


def _share(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    share = float(value)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {share}")
    return share


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _hashes(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]{64}", v) for v in value
    ):
        raise ValueError(f"{name} must be a list of SHA-256 hex digests, got {value!r}")
    return tuple(str(v).lower() for v in value)


def _choice(value: object, name: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


@dataclass(kw_only=True)
class Faults:
    """What the server does wrong, and when (see the module docstring for each field)."""

    latency_s: tuple[float, float] = (0.0, 0.0)
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    retry_delay_s: float = DEFAULT_RETRY_DELAY_S
    next_429: int = 0
    next_5xx: int = 0
    status_5xx: int | None = None
    block_word: str | None = None
    block_image_sha256: tuple[str, ...] = ()
    block_as: BlockAs = "auto"
    next_malformed: int = 0
    malformed: MalformedKind = "json"
    next_no_image: int = 0
    no_image_reason: NoImageReason = "NO_IMAGE"
    next_mislabel: int = 0
    thoughts: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Read the `LOCAL_GEMINI_*` fault variables.

        Raises:
            ValueError: a variable is set to something unusable.
        """
        faults = cls()
        if latency := env.get("LOCAL_GEMINI_LATENCY", "").strip():
            faults.latency_s = parse_latency(latency)
        if rate := env.get("LOCAL_GEMINI_RATE_429", "").strip():
            faults.rate_429 = _share(rate, "LOCAL_GEMINI_RATE_429")
        if rate := env.get("LOCAL_GEMINI_RATE_5XX", "").strip():
            faults.rate_5xx = _share(rate, "LOCAL_GEMINI_RATE_5XX")
        if delay := env.get("LOCAL_GEMINI_RETRY_DELAY", "").strip():
            faults.retry_delay_s = parse_latency(delay)[0]
        if word := env.get("LOCAL_GEMINI_BLOCK_WORD", "").strip():
            faults.block_word = word
        return faults

    def update(self, changes: Mapping[str, object]) -> None:
        """Merge `changes` (the admin JSON) into these faults; nothing changes when one field is invalid.

        Raises:
            ValueError: an unknown field or an invalid value.
        """
        new = Faults(**asdict(self))
        for name, value in changes.items():
            match name:
                case "latency" | "latency_s":
                    new.latency_s = parse_latency(value)
                case "rate_429" | "rate_5xx":
                    setattr(new, name, _share(value, name))
                case "retry_delay_s":
                    new.retry_delay_s = parse_latency(value)[0]
                case "next_429" | "next_5xx" | "next_malformed" | "next_no_image" | "next_mislabel":
                    setattr(new, name, _count(value, name))
                case "status_5xx":
                    if value is not None and value not in (500, 502, 503, 504):
                        raise ValueError(f"status_5xx must be 500, 502, 503, 504 or null, got {value!r}")
                    new.status_5xx = value
                case "block_word":
                    if value is not None and not (isinstance(value, str) and value.strip()):
                        raise ValueError(f"block_word must be a non-empty string or null, got {value!r}")
                    new.block_word = value.strip() if isinstance(value, str) else None
                case "block_image_sha256":
                    new.block_image_sha256 = _hashes(value, name)
                case "block_as":
                    new.block_as = cast("BlockAs", _choice(value, name, ("auto", "prompt", "image")))
                case "malformed":
                    new.malformed = cast("MalformedKind", _choice(value, name, ("json", "structure")))
                case "no_image_reason":
                    new.no_image_reason = cast("NoImageReason", _choice(value, name, ("NO_IMAGE", "STOP")))
                case "thoughts":
                    if not isinstance(value, bool):
                        raise ValueError(f"thoughts must be true or false, got {value!r}")
                    new.thoughts = value
                case _:
                    raise ValueError(f"unknown fault {name!r}")
        for f in fields(self):
            setattr(self, f.name, getattr(new, f.name))

    def to_json(self) -> JsonObject:
        """Return the faults as the admin endpoint shows them."""
        out = asdict(self)
        out["latency"] = list(out.pop("latency_s"))
        out["block_image_sha256"] = list(out["block_image_sha256"])
        return out


@dataclass(kw_only=True)
class Stats:
    """Counters of the generateContent calls received since the start or the last reset."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    errors_injected: int = 0
    blocked: int = 0
    images: int = 0
    rejected: int = 0
    unauthorized: int = 0

    def to_json(self) -> dict[str, int]:
        """Return the counters as `GET /stats` shows them."""
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedRequest:
    """What one generateContent call asked for (no image bytes)."""

    model: str
    api_version: str
    prompt: str
    images: int
    image_sha256: tuple[str, ...]
    aspect_ratio: str | None
    image_size: str | None
    seed: int | None
    response_modalities: tuple[str, ...] | None
    include_thoughts: bool
    at: float = field(default_factory=time.time)


# ---------------------------------------------------------------------------------------------------------------
# Drawing (blocking; called in a worker thread)
# ---------------------------------------------------------------------------------------------------------------

Rgb = tuple[int, int, int]


def draw_size(size: tuple[int, int], draw_px: int | None) -> tuple[int, int]:
    """Shrink `size` so its longest side is at most `draw_px`, keeping its aspect; unchanged when None."""
    width, height = size
    longest = max(width, height)
    if draw_px is None or longest <= draw_px:
        return size
    scale = draw_px / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _reference_thumbnail(data: bytes, box: int) -> Image.Image | None:
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.draft("RGB", (box, box))
            thumb = source.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    thumb.thumbnail((box, box))
    return thumb


def _mix(a: Rgb, b: Rgb, weight: float) -> Rgb:
    return (
        round(a[0] * (1 - weight) + b[0] * weight),
        round(a[1] * (1 - weight) + b[1] * weight),
        round(a[2] * (1 - weight) + b[2] * weight),
    )


def draw_image(
    *,
    prompt: str,
    seed: int | None,
    references: Sequence[bytes] = (),
    size: tuple[int, int],
    image_format: Literal["PNG", "JPEG"] = "PNG",
    variant: str = "",
) -> bytes:
    """Draw the picture of (prompt, seed, references) at `size`, encoded as PNG or JPEG; blocking, deterministic.

    The background gradient and the palette come from a hash of the prompt, seed and `variant` (a draft is
    drawn with another variant); each reference's average colour tints one palette entry and the references
    are shown as thumbnails in a band along the bottom, so changing a reference changes the picture.
    """
    width, height = size
    key = hashlib.sha256(f"{variant}\x00{seed}\x00{prompt}".encode()).digest()
    rng = random.Random(key)  # noqa: S311 - a deterministic picture, not a secret
    box = max(8, min(256, height // 4, width // max(1, len(references))))
    thumbs = [thumb for data in references if (thumb := _reference_thumbnail(data, box)) is not None]
    palette: list[Rgb] = [(key[i], key[i + 1], key[i + 2]) for i in range(0, 18, 3)]
    for i, thumb in enumerate(thumbs):
        average = cast("Rgb", thumb.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))
        palette[i % len(palette)] = _mix(palette[i % len(palette)], average, 0.7)

    top = Image.new("RGB", size, palette[0])
    bottom = Image.new("RGB", size, palette[1])
    gradient = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    canvas = Image.composite(bottom, top, gradient)
    draw = ImageDraw.Draw(canvas)
    unit = max(2, min(width, height) // 6)
    for i in range(5 + key[20] % 8):
        cx, cy = rng.randrange(width), rng.randrange(height)
        rx, ry = rng.randint(unit // 2, unit * 2), rng.randint(unit // 2, unit * 2)
        bbox = (cx - rx, cy - ry, cx + rx, cy + ry)
        colour = palette[2 + i % 4]
        outline = palette[(3 + i) % len(palette)]
        match rng.randrange(3):
            case 0:
                draw.ellipse(bbox, fill=colour, outline=outline, width=max(1, unit // 16))
            case 1:
                draw.rectangle(bbox, fill=colour, outline=outline, width=max(1, unit // 16))
            case _:
                points = [(rng.randrange(width), rng.randrange(height)) for _ in range(3)]
                draw.polygon(points, fill=colour, outline=outline)
    if thumbs:
        band = max(t.height for t in thumbs) + 4
        draw.rectangle((0, height - band, width, height), fill=(255, 255, 255))
        x = 2
        for thumb in thumbs:
            canvas.paste(thumb, (x, height - band + 2))
            x += thumb.width + 4
    if width >= 96 and height >= 48:
        font = ImageFont.load_default(size=max(10, min(width, height) // 24))
        caption = prompt.strip().replace("\n", " ")[:60]
        draw.text((unit // 4 + 1, unit // 4 + 1), caption, fill=(0, 0, 0), font=font)
        draw.text((unit // 4, unit // 4), caption, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    if image_format == "JPEG":
        canvas.save(out, format="JPEG", quality=85)
    else:
        canvas.save(out, format="PNG", compress_level=1)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Wire helpers
# ---------------------------------------------------------------------------------------------------------------


def error_body(code: int, status: str, message: str, details: list[JsonObject] | None = None) -> JsonObject:
    """Return Google's error JSON (`google.rpc.Status` under "error")."""
    error: JsonObject = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(code: int, status: str, message: str, details: list[JsonObject] | None = None) -> web.Response:
    """Return Google's error JSON as an HTTP response with that status."""
    return web.json_response(error_body(code, status, message, details), status=code)


def invalid_argument(message: str) -> web.Response:
    """Return a 400 INVALID_ARGUMENT answer."""
    return error_response(400, "INVALID_ARGUMENT", message)


def b64decode_any(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (Google's proto-JSON parser accepts both alphabets).

    Raises:
        ValueError: not base64.
    """
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"Base64 decoding failed: {exc}") from exc


def _to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camelize(value: Any) -> Any:
    """Rename every snake_case key to lowerCamelCase, as Google's proto-JSON parser accepts both spellings.

    google-genai really sends a mix, e.g. `{"inlineData": {"data": …, "mime_type": "image/png"}}`.
    """
    if isinstance(value, dict):
        return {_to_camel(str(k)): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def sniff_mime(data: bytes) -> str | None:
    """Return the MIME type the bytes really are (PNG, JPEG, WebP, HEIC), or None."""
    fmt = sniff_image(data)
    if fmt is not None:
        return fmt.content_type
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypheif"):
        return "image/heic"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Parsed:
    prompt: str
    images: list[bytes]
    aspect_ratio: str | None
    image_size: str | None
    seed: int | None
    modalities: tuple[str, ...] | None
    include_thoughts: bool


def _valid_ratio(ratio: str) -> bool:
    w, sep, h = ratio.partition(":")
    return bool(sep) and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0


def parse_request(spec: ModelSpec, body: JsonObject) -> _Parsed | web.Response:
    """Validate a camelized generateContent body like Gemini does; return its parts or the 400 answer."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return invalid_argument("* GenerateContentRequest.contents: contents is not specified\n")
    texts: list[str] = []
    images: list[bytes] = []
    for ci, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            return invalid_argument(
                f"* GenerateContentRequest.contents[{ci}].parts: contents.parts must not be empty.\n"
            )
        user = content.get("role", "user") == "user"
        for pi, part in enumerate(parts):
            if not isinstance(part, dict):
                return invalid_argument(f"Invalid value at 'contents[{ci}].parts[{pi}]': not an object")
            if isinstance(part.get("text"), str) and user and not part.get("thought"):
                texts.append(part["text"])
            blob = part.get("inlineData")
            if blob is None:
                continue
            mime = blob.get("mimeType", "") if isinstance(blob, dict) else ""
            if mime not in INPUT_MIME:
                return invalid_argument(f"Unsupported MIME type: {mime}")
            try:
                raw = b64decode_any(str(blob.get("data", "")))
            except ValueError as exc:
                return invalid_argument(
                    f"Invalid value at 'contents[{ci}].parts[{pi}].inline_data.data' (TYPE_BYTES), {exc}"
                )
            if len(raw) > MAX_INLINE_IMAGE_BYTES:
                return invalid_argument("Inline image exceeds the maximum size of 7 MB.")
            sniffed = sniff_mime(raw)
            if sniffed is None:
                return invalid_argument(
                    "Unable to process input image. Please retry or report in "
                    "https://developers.generativeai.google/guide/troubleshooting"
                )
            if sniffed != mime and not (sniffed == "image/heic" and mime == "image/heif"):
                return invalid_argument(f"Unhandled generated data mime type: {sniffed}")
            if user:
                images.append(raw)
    if len(images) > spec.max_input_images:
        return invalid_argument(
            f"Too many images in the request: {len(images)} > {spec.max_input_images} for models/{spec.name}."
        )
    if body.get("systemInstruction") and not spec.thinking:
        return invalid_argument(f"Developer instruction is not enabled for models/{spec.name}")
    config = body.get("generationConfig") or {}
    if not isinstance(config, dict):
        return invalid_argument("Invalid value at 'generation_config': not an object")
    image_config = config.get("imageConfig") or {}
    ratio = image_config.get("aspectRatio")
    allowed = spec.aspect_ratios
    if ratio is not None and (
        not isinstance(ratio, str) or (ratio not in allowed if allowed is not None else not _valid_ratio(ratio))
    ):
        supported = f" Supported: {', '.join(allowed)}" if allowed is not None else ""
        return invalid_argument(f"Unsupported aspect ratio: {ratio}.{supported}")
    size = image_config.get("imageSize")
    if size is not None:
        sizes = spec.image_sizes if spec.image_sizes is not None else IMAGE_SIZES
        if not sizes:
            return invalid_argument(f"imageSize is not supported by models/{spec.name}.")
        if size not in sizes:
            return invalid_argument(f"Unsupported image size: {size}. Supported: {', '.join(sizes)}")
    candidates = config.get("candidateCount")
    if isinstance(candidates, int) and candidates > 1:
        return invalid_argument(f"Multiple candidates is not enabled for models/{spec.name}")
    seed = config.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return invalid_argument(f"Invalid value at 'generation_config.seed' (TYPE_INT32), {seed!r}")
    modalities = config.get("responseModalities")
    thinking = config.get("thinkingConfig") or {}
    return _Parsed(
        prompt="\n".join(texts),
        images=images,
        aspect_ratio=ratio,
        image_size=size,
        seed=seed,
        modalities=tuple(str(m).upper() for m in modalities) if isinstance(modalities, list) else None,
        include_thoughts=bool(thinking.get("includeThoughts")) if isinstance(thinking, dict) else False,
    )


def _response_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


# ---------------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------------


class LocalGemini:
    """The local Gemini-compatible server; `async with LocalGemini(port=0) as g:` serves it at `g.url`.

    Args:
        host: the address to listen on (127.0.0.1 unless you mean to expose it).
        port: the port; 0 picks a free one.
        api_key: the one accepted `x-goog-api-key`; None accepts any non-empty key.
        faults: the faults to start with (and to restore on reset); None for none.
        draw_px: draw images with this longest side instead of the real size (same aspect), for benchmarks.
        fault_seed: seeds the random fault draws and latency ranges, for repeatable benchmarks.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        faults: Faults | None = None,
        draw_px: int | None = None,
        fault_seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.draw_px = draw_px
        self._initial_faults = Faults(**asdict(faults)) if faults is not None else Faults()
        self.faults = Faults(**asdict(self._initial_faults))
        self.stats = Stats()
        self.received: deque[ReceivedRequest] = deque(maxlen=REQUEST_LOG_SIZE)
        self._fault_seed = fault_seed
        self._rng = random.Random(fault_seed)  # noqa: S311 - fault draws, not secrets
        self._next_5xx_is_503 = False
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Self:
        """Build a server from the `LOCAL_GEMINI_*` variables; keyword arguments win over them.

        Raises:
            ValueError: a variable is set to something unusable.
        """
        kwargs: dict[str, Any] = {"faults": Faults.from_env(env)}
        if key := env.get("LOCAL_GEMINI_API_KEY", "").strip():
            kwargs["api_key"] = key
        if px := env.get("LOCAL_GEMINI_DRAW_PX", "").strip():
            kwargs["draw_px"] = int(px)
            if kwargs["draw_px"] < 1:
                raise ValueError(f"LOCAL_GEMINI_DRAW_PX must be a positive integer, got {px!r}")
        if seed := env.get("LOCAL_GEMINI_FAULT_SEED", "").strip():
            kwargs["fault_seed"] = int(seed)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """Return the aiohttp application (for `web.run_app` or a test server)."""
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_post("/{version}/models/{call}", self._handle_model_call)
        app.router.add_get("/stats", self._handle_stats)
        app.router.add_get("/admin/faults", self._handle_get_faults)
        app.router.add_post("/admin/faults", self._handle_set_faults)
        app.router.add_post("/admin/reset", self._handle_reset)
        app.router.add_get("/admin/requests", self._handle_requests)
        return app

    async def start(self) -> None:
        """Start listening; `url` then says where."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
                break
        log.info("local Gemini listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL to give the SDK (`HttpOptions(base_url=…)` / `GEMINI_BASE_URL`)."""
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Zero the statistics, forget scripted faults and restore the faults the server started with."""
        self.stats = Stats(in_flight=self.stats.in_flight)
        self.faults = Faults(**asdict(self._initial_faults))
        self.received.clear()
        self._rng = random.Random(self._fault_seed)  # noqa: S311 - fault draws, not secrets
        self._next_5xx_is_503 = False

    def set_faults(self, **changes: object) -> None:
        """Merge fault changes (the admin JSON's fields) into the current faults.

        Raises:
            ValueError: an unknown field or an invalid value.
        """
        self.faults.update(changes)

    # -- admin ----------------------------------------------------------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())

    async def _handle_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def _handle_set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        if not isinstance(changes, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        try:
            self.faults.update(changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        log.info("faults set: %s", sorted(changes))
        return web.json_response(self.faults.to_json())

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"stats": self.stats.to_json(), "faults": self.faults.to_json()})

    async def _handle_requests(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.received])

    # -- the API --------------------------------------------------------------------------------------------

    async def _handle_model_call(self, request: web.Request) -> web.Response:
        version = request.match_info["version"]
        model, _, method = request.match_info["call"].partition(":")
        if version not in API_VERSIONS or method != "generateContent":
            return error_response(404, "NOT_FOUND", f"Method {method or '(none)'} is not found for {request.path}.")
        self.stats.requests += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            return await self._generate_content(request, version, model)
        finally:
            self.stats.in_flight -= 1

    def _check_key(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return error_response(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if self.api_key is not None and key != self.api_key:
            return error_response(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
        return None

    async def _generate_content(self, request: web.Request, version: str, model: str) -> web.Response:
        if (denied := self._check_key(request)) is not None:
            self.stats.unauthorized += 1
            return denied
        spec = model_spec(model)
        if not spec.known and "image" not in model:
            self.stats.rejected += 1
            return error_response(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {version}, or is not supported for generateContent.",
            )
        try:
            body = camelize(await request.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.stats.rejected += 1
            return invalid_argument("Invalid JSON payload received.")
        parsed = parse_request(spec, body) if isinstance(body, dict) else invalid_argument("Invalid JSON payload.")
        if isinstance(parsed, web.Response):
            self.stats.rejected += 1
            return parsed
        self.received.append(
            ReceivedRequest(
                model=model,
                api_version=version,
                prompt=parsed.prompt[:500],
                images=len(parsed.images),
                image_sha256=tuple(hashlib.sha256(i).hexdigest() for i in parsed.images),
                aspect_ratio=parsed.aspect_ratio,
                image_size=parsed.image_size,
                seed=parsed.seed,
                response_modalities=parsed.modalities,
                include_thoughts=parsed.include_thoughts,
            )
        )
        low, high = self.faults.latency_s
        if high > 0:
            await asyncio.sleep(low if low == high else self._rng.uniform(low, high))
        if (injected := self._injected_fault(spec)) is not None:
            self.stats.errors_injected += 1
            return injected
        if self._is_blocked(parsed.prompt) or self._has_blocked_image(parsed.images):
            self.stats.blocked += 1
            return web.json_response(self._blocked_body(spec, parsed))
        body_out = await self._success_body(spec, parsed)
        self.stats.images += 1
        return web.json_response(body_out)

    def _injected_fault(self, spec: ModelSpec) -> web.Response | None:
        faults = self.faults
        if faults.next_429 > 0:
            faults.next_429 -= 1
            return self._quota_exceeded(spec)
        if faults.next_5xx > 0:
            faults.next_5xx -= 1
            return self._server_error()
        if faults.next_malformed > 0:
            faults.next_malformed -= 1
            return self._malformed()
        if faults.next_no_image > 0:
            faults.next_no_image -= 1
            return web.json_response(self._no_image_body(spec))
        if faults.rate_429 and self._rng.random() < faults.rate_429:
            return self._quota_exceeded(spec)
        if faults.rate_5xx and self._rng.random() < faults.rate_5xx:
            return self._server_error()
        return None

    def _quota_exceeded(self, spec: ModelSpec) -> web.Response:
        return error_response(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. For more information on "
            "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                            "quotaDimensions": {"location": "global", "model": spec.name},
                            "quotaValue": "500",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{self.faults.retry_delay_s:g}s"},
            ],
        )

    def _server_error(self) -> web.Response:
        status = self.faults.status_5xx
        if status is None:
            status = 503 if self._next_5xx_is_503 else 500
            self._next_5xx_is_503 = not self._next_5xx_is_503
        if status == 503:
            return error_response(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if status == 504:
            return error_response(504, "DEADLINE_EXCEEDED", "The request timed out. Please try again.")
        if status == 502:
            return error_response(502, "UNAVAILABLE", "Bad Gateway")
        return error_response(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        )

    def _malformed(self) -> web.Response:
        if self.faults.malformed == "json":
            return web.Response(
                status=200, text='{"candidates": [{"content": {"parts": [', content_type="application/json"
            )
        return web.json_response({"candidates": "not-a-list", "usageMetadata": ["not", "an", "object"]})

    def _usage(self, spec: ModelSpec, parsed: _Parsed, *, images_out: int, text_tokens: int) -> JsonObject:
        prompt_text = max(1, len(parsed.prompt.split()))
        prompt_images = spec.input_image_tokens * len(parsed.images)
        image_tokens = spec.output_tokens.get(parsed.image_size or "1K", 1290) * images_out
        thoughts = 180 if spec.thinking and images_out else 0
        usage: JsonObject = {
            "promptTokenCount": prompt_text + prompt_images,
            "candidatesTokenCount": image_tokens + text_tokens,
            "totalTokenCount": prompt_text + prompt_images + image_tokens + text_tokens + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_text}]
            + ([{"modality": "IMAGE", "tokenCount": prompt_images}] if prompt_images else []),
        }
        if image_tokens or text_tokens:
            usage["candidatesTokensDetails"] = (
                [{"modality": "IMAGE", "tokenCount": image_tokens}] if images_out else []
            ) + ([{"modality": "TEXT", "tokenCount": text_tokens}] if text_tokens else [])
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    def _envelope(self, spec: ModelSpec, usage: JsonObject) -> JsonObject:
        return {"usageMetadata": usage, "modelVersion": spec.name, "responseId": _response_id()}

    def _is_blocked(self, prompt: str) -> bool:
        word = self.faults.block_word
        return word is not None and word.casefold() in prompt.casefold()

    def _has_blocked_image(self, images: list[bytes]) -> bool:
        blocked = self.faults.block_image_sha256
        return bool(blocked) and any(hashlib.sha256(i).hexdigest() in blocked for i in images)

    def _blocked_body(self, spec: ModelSpec, parsed: _Parsed) -> JsonObject:
        body = self._envelope(spec, self._usage(spec, parsed, images_out=0, text_tokens=0))
        mode = self.faults.block_as
        if mode == "auto":
            mode = "prompt" if hashlib.sha256(parsed.prompt.encode()).digest()[0] % 2 == 0 else "image"
        if mode == "prompt":
            body["promptFeedback"] = {"blockReason": "PROHIBITED_CONTENT"}
        else:
            body["candidates"] = [
                {
                    "finishReason": "IMAGE_SAFETY",
                    "finishMessage": "Unable to show the generated image. The generated image was filtered because "
                    "it violated Google's Generative AI Prohibited Use policy.",
                    "index": 0,
                }
            ]
        return body

    def _no_image_body(self, spec: ModelSpec) -> JsonObject:
        reason = self.faults.no_image_reason
        text = "I'm unable to create that image." if reason == "NO_IMAGE" else "Here is an image of what you asked:"
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": reason, "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 9, "totalTokenCount": 17},
            "modelVersion": spec.name,
            "responseId": _response_id(),
        }

    async def _success_body(self, spec: ModelSpec, parsed: _Parsed) -> JsonObject:
        size = draw_size(spec.pixel_size(parsed.aspect_ratio, parsed.image_size), self.draw_px)
        mislabel = self.faults.next_mislabel > 0
        if mislabel:
            self.faults.next_mislabel -= 1
        image_format: Literal["PNG", "JPEG"] = "JPEG" if mislabel or spec.output_mime == "image/jpeg" else "PNG"
        mime = "image/png" if mislabel else spec.output_mime
        with_thoughts = spec.thinking and (parsed.include_thoughts or self.faults.thoughts)
        final = asyncio.to_thread(
            draw_image,
            prompt=parsed.prompt,
            seed=parsed.seed,
            references=parsed.images,
            size=size,
            image_format=image_format,
        )
        if with_thoughts:
            draft_bytes, image = await asyncio.gather(
                asyncio.to_thread(
                    draw_image,
                    prompt=parsed.prompt,
                    seed=parsed.seed,
                    references=parsed.images,
                    size=size,
                    image_format=image_format,
                    variant="draft",
                ),
                final,
            )
        else:
            draft_bytes, image = None, await final
        response_id = _response_id()
        signatures = (
            base64.b64encode(hashlib.sha256(f"{response_id}:{i}".encode()).digest()).decode() for i in range(9)
        )
        parts: list[JsonObject] = []
        if draft_bytes is not None:
            parts.append({"text": "**Planning the composition**\n\nI'll lay out the scene first.", "thought": True})
            parts.append(
                {"inlineData": {"mimeType": mime, "data": base64.b64encode(draft_bytes).decode()}, "thought": True}
            )
        with_text = parsed.modalities is None or "TEXT" in parsed.modalities
        if with_text:
            text_part: JsonObject = {"text": "Here is the image you asked for."}
            if spec.thinking:
                text_part["thoughtSignature"] = next(signatures)
            parts.append(text_part)
        image_part: JsonObject = {"inlineData": {"mimeType": mime, "data": base64.b64encode(image).decode()}}
        if spec.thinking:
            image_part["thoughtSignature"] = next(signatures)
        parts.append(image_part)
        body: JsonObject = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": self._usage(spec, parsed, images_out=1, text_tokens=8 if with_text else 0),
            "modelVersion": spec.name,
            "responseId": response_id,
        }
        return body


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server standalone until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m worker.local_gemini", description="A local Gemini-compatible image server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="accept only this key (default: LOCAL_GEMINI_API_KEY or any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = LocalGemini.from_env(os.environ, host=args.host, port=args.port, api_key=args.api_key)
    log.info("local Gemini on http://%s:%d (key: %s)", args.host, args.port, "fixed" if server.api_key else "any")
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
