"""The local Gemini server's faults (scripted, random, blocks) and the statistics it keeps."""

import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Literal, Self, cast

from local.gemini.wire import JsonObject

DEFAULT_RETRY_DELAY_S = 1.0
DEFAULT_BATCH_WAIT_S = 0.5  # how long a new batch stays pending: short, so tests and local runs see it move
DEFAULT_BATCH_CONCURRENCY = 4  # a batch's requests drawn at once
BATCH_FATES = ("FAILED", "EXPIRED")
REQUEST_LOG_SIZE = 200

BlockAs = Literal["auto", "prompt", "image"]
MalformedKind = Literal["json", "structure"]
NoImageReason = Literal["NO_IMAGE", "STOP"]


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


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be seconds, got {value!r}")
    seconds = float(value)
    if not seconds >= 0:
        raise ValueError(f"{name} must be 0 or more seconds, got {value!r}")
    return seconds


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
    next_latencies: list[float] = field(default_factory=list)  # scripted waits, one per request as they arrive
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
    batch_wait_s: float = DEFAULT_BATCH_WAIT_S
    batch_concurrency: int = DEFAULT_BATCH_CONCURRENCY
    batch_fail_rate: float = 0.0
    next_batch_state: str | None = None  # "FAILED" or "EXPIRED": how the next batch created ends
    files_latency_s: float = 0.0  # seconds before a finished upload or a download answers (slow transfers)

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
        if wait := env.get("LOCAL_GEMINI_BATCH_WAIT_S", "").strip():
            faults.batch_wait_s = _seconds(wait, "LOCAL_GEMINI_BATCH_WAIT_S")
        if at_once := env.get("LOCAL_GEMINI_BATCH_CONCURRENCY", "").strip():
            faults.batch_concurrency = _positive(int(at_once), "LOCAL_GEMINI_BATCH_CONCURRENCY")
        if wait := env.get("LOCAL_GEMINI_FILES_LATENCY", "").strip():
            faults.files_latency_s = _seconds(wait, "LOCAL_GEMINI_FILES_LATENCY")
        if rate := env.get("LOCAL_GEMINI_BATCH_FAIL_RATE", "").strip():
            faults.batch_fail_rate = _share(rate, "LOCAL_GEMINI_BATCH_FAIL_RATE")
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
                case "next_latencies":
                    if not isinstance(value, list) or len(value) > 1000:
                        raise ValueError("next_latencies must be a list of at most 1000 waits in seconds")
                    new.next_latencies = [parse_latency(v)[0] for v in value]
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
                case "batch_wait_s":
                    new.batch_wait_s = _seconds(value, name)
                case "batch_concurrency":
                    new.batch_concurrency = _positive(value, name)
                case "files_latency_s":
                    new.files_latency_s = _seconds(value, name)
                case "batch_fail_rate":
                    new.batch_fail_rate = _share(value, name)
                case "next_batch_state":
                    fate = value.removeprefix("BATCH_STATE_") if isinstance(value, str) else value
                    new.next_batch_state = None if fate is None else _choice(fate, name, BATCH_FATES)
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
    batches_created: int = 0  # the Batch API's, counted apart: `requests` and `images` are generateContent's
    batch_requests: int = 0
    batch_images: int = 0

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
    body_bytes: int = 0  # the request body's size as received
    batch: bool = False  # one request of a batch (not a generateContent call)
    at: float = field(default_factory=time.time)
