"""The describe job kind (`/describe`): an image in, four prompts out, from a text-capable Gemini model.

A describe chunk is a `ChunkInput` with `kind="describe"` (`worker.contract`): each item's one reference is the image,
its prompt the instruction, the chunk's model a text model (the bot's `GEMINI_DESCRIBE_MODEL`). The worker sends
the image and the instruction with a JSON response schema asking for exactly `DESCRIBE_PROMPTS` prompts
(structured output: `response_mime_type="application/json"` with `response_schema`,
https://ai.google.dev/gemini-api/docs/structured-output), cleans each prompt (`clean_prompt`), adds the image's
aspect ratio as `--ar W:H` and writes a `DescribeAnswer` as JSON under `describe_key(output_key)`.

Errors map to the contract's codes as for an image: Gemini's refusals through `worker.gemini.classify`, a blocked
prompt SAFETY, an answer without four usable prompts UPSTREAM (retryable), an unreadable image BAD_INPUT.
"""

import asyncio
import json
import logging
import math
import re

from google.genai import types

from storage._imagecheck import ImageRejectedError, check_image
from storage.errors import ObjectNotFoundError
from usertext.controls import strip_controls
from worker.catalogue import ASPECT_RATIOS_10
from worker.contract import (
    DESCRIBE_PROMPTS,
    MAX_DESCRIBED_PROMPT_CHARS,
    ChunkInput,
    ChunkItem,
    ChunkResult,
    DescribeAnswer,
    ErrorCode,
    ItemError,
    ItemOk,
    ItemResult,
    TokenUsage,
    add_usage,
    describe_key,
)
from worker.deps import RunpodJob, WorkerDeps
from worker.errors import GenerationError
from worker.gemini import classify, usage_of
from worker.generation import TextCaller

log = logging.getLogger(__name__)

# Tries of one describe call for a retryable failure (429, 5xx, an answer without usable prompts).
MAX_ATTEMPTS = 3
# Room kept in a prompt for the ` --ar W:H` the worker appends.
_AR_ROOM = 12
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>|@(?:everyone|here)\b", re.IGNORECASE)
_LIST_MARK = re.compile(r"^\s*(?:\d+[.)]|[-*•]|[1-4]\ufe0f?\u20e3)\s*")
_MARKDOWN = re.compile(r"[*_~`|#>\[\]]")


def response_schema(count: int = DESCRIBE_PROMPTS) -> types.Schema:
    """Return the JSON schema of the answer: an object whose `prompts` is an array of exactly `count` strings."""
    return types.Schema(
        type=types.Type.OBJECT,
        properties={
            "prompts": types.Schema(
                type=types.Type.ARRAY,
                items=types.Schema(type=types.Type.STRING),
                min_items=count,
                max_items=count,
            )
        },
        required=["prompts"],
    )


def describe_config() -> types.GenerateContentConfig:
    """Return the call's configuration: JSON shaped by `response_schema`, one candidate."""
    return types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=response_schema(), candidate_count=1
    )


def describe_contents(image: bytes, mime_type: str, instruction: str) -> list[types.Content]:
    """Return the request's one user turn: the image, then the instruction."""
    return [
        types.Content(
            role="user",
            parts=[types.Part.from_bytes(data=image, mime_type=mime_type), types.Part.from_text(text=instruction)],
        )
    ]


def clean_prompt(text: str, *, limit: int = MAX_DESCRIBED_PROMPT_CHARS - _AR_ROOM) -> str | None:
    """Return a model's prompt made safe to show and to run, or None when nothing usable is left.

    Control characters become spaces; mentions (`<@id>`, `<#id>`, `@everyone`) and the `@` that would start one are
    removed; Markdown marks, a leading list number or 1️⃣-style keycap, and quotes around the whole are dropped;
    `--` is shortened so no Midjourney parameter slips in beside Peel's `--ar`; whitespace is collapsed and the text
    cut at a word within `limit` characters.
    """
    text = strip_controls(text, replacement=" ")
    text = _MENTION.sub(" ", text).replace("@", " ")
    text = _LIST_MARK.sub("", text)
    text = _MARKDOWN.sub("", text)
    text = re.sub(r"-{2,}|\u2014", " - ", text)
    text = " ".join(text.split()).strip(" \"'\u201c\u201d\u2018\u2019")
    if len(text) > limit:
        cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
        text = cut.rstrip(" ,;:-")
    return text or None


def snap_ratio(width: int, height: int) -> str:
    """Return the aspect ratio of every image model (`ASPECT_RATIOS_10`) nearest the image's shape."""
    shape = math.log(width / height)

    def distance(ratio: str) -> float:
        w, _, h = ratio.partition(":")
        return abs(math.log(int(w) / int(h)) - shape)

    return min(ASPECT_RATIOS_10, key=distance)


def prompts_of(response: types.GenerateContentResponse) -> list[str]:
    """Return the cleaned prompts of an answer.

    Raises:
        GenerationError: SAFETY when Gemini blocked the prompt or the answer; UPSTREAM (retryable) when the answer
            is not the schema's JSON or holds fewer than `DESCRIBE_PROMPTS` usable prompts.
    """
    usage = usage_of(response)
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = getattr(feedback.block_reason, "value", feedback.block_reason)
        raise GenerationError(ErrorCode.SAFETY, f"Gemini blocked the image: {reason}", usage=usage)
    candidate = response.candidates[0] if response.candidates else None
    finish = getattr(candidate.finish_reason, "value", None) if candidate is not None else None
    if finish in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"):
        raise GenerationError(ErrorCode.SAFETY, f"Gemini blocked the description: {finish}", usage=usage)
    parts = candidate.content.parts if candidate is not None and candidate.content is not None else None
    text = "".join(p.text for p in parts or () if p.text and not p.thought)
    try:
        data = json.loads(text)
    except ValueError:
        raise GenerationError(ErrorCode.UPSTREAM, "Gemini's answer is not JSON", usage=usage) from None
    raw = data.get("prompts") if isinstance(data, dict) else None
    cleaned = [c for c in (clean_prompt(p) for p in raw if isinstance(p, str)) if c] if isinstance(raw, list) else []
    unique = list(dict.fromkeys(cleaned))
    if len(unique) < DESCRIBE_PROMPTS:
        raise GenerationError(
            ErrorCode.UPSTREAM, f"Gemini answered {len(unique)} usable prompt(s), not {DESCRIBE_PROMPTS}", usage=usage
        )
    return unique[:DESCRIBE_PROMPTS]


async def run_describe(deps: WorkerDeps, job: RunpodJob, chunk: ChunkInput) -> ChunkResult:
    """Describe each item's image; every item ends ok (its answer stored) or with an error code."""
    limit = asyncio.Semaphore(chunk.concurrency)

    async def one(item: ChunkItem) -> ItemResult:
        async with limit:
            return await _describe_item(deps, chunk.model, item)

    results = list(await asyncio.gather(*(one(item) for item in chunk.items)))
    ok = sum(1 for r in results if isinstance(r, ItemOk))
    log.info("job %s: described %d of %d", job.get("id", "?"), ok, len(results), extra={"action": "succeed"})
    return ChunkResult(ok=ok, failed=len(results) - ok, results=results)


async def _describe_item(deps: WorkerDeps, model: str, item: ChunkItem) -> ItemResult:
    if len(item.ref_keys) != 1:
        return _error(item, ErrorCode.BAD_INPUT, "a describe item names exactly one image")
    caller = deps.text
    if caller is None:
        return _error(item, ErrorCode.CONFIG, "this worker has no Gemini client")
    try:
        data = await deps.store.get_bytes(item.ref_keys[0])
        facts = await asyncio.to_thread(check_image, data, max_pixels=deps.max_reference_pixels)
    except ObjectNotFoundError:
        return _error(item, ErrorCode.BAD_INPUT, f"{item.ref_keys[0]} is not in the store")
    except ImageRejectedError as exc:
        return _error(item, ErrorCode.BAD_INPUT, f"the image can't be read: {exc}")
    except Exception as exc:  # noqa: BLE001 - a store failure is retryable; its text may hold endpoints
        return _error(item, ErrorCode.STORAGE, f"reading the image failed: {type(exc).__name__}")
    try:
        contents = describe_contents(data, facts.format.content_type, item.prompt)
        prompts, billed = await _ask(deps, caller, model, contents)
    except GenerationError as exc:
        return _error(item, exc.code, exc.message, usage=exc.usage)
    ratio = snap_ratio(facts.width, facts.height)
    answer = DescribeAnswer(
        prompts=[f"{p} --ar {ratio}" for p in prompts], width=facts.width, height=facts.height, aspect_ratio=ratio
    )
    key = describe_key(item.output_key)
    try:
        await deps.store.put(key, answer.model_dump_json().encode(), content_type="application/json")
    except Exception as exc:  # noqa: BLE001 - retryable; the answer is made again
        return _error(item, ErrorCode.STORAGE, f"writing the answer failed: {type(exc).__name__}", usage=billed)
    return ItemOk(index=item.index, key=key, width=facts.width, height=facts.height, usage=billed)


async def _ask(
    deps: WorkerDeps, caller: TextCaller, model: str, contents: list[types.Content]
) -> tuple[list[str], TokenUsage | None]:
    """Return the prompts of the model's answer and the usage of every call made for them.

    Raises:
        GenerationError: the last failure once it is not retryable or `MAX_ATTEMPTS` are spent, with the usage of
            every call (each answer is billed, the failed ones too).
    """
    config = describe_config()
    billed: TokenUsage | None = None
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await caller.call_model(model, contents, config)
        except Exception as exc:  # noqa: BLE001 - classified as an image call's failure is
            error = exc if isinstance(exc, GenerationError) else classify(exc)
            billed = add_usage(billed, error.usage)
        else:
            billed = add_usage(billed, usage_of(response))
            try:
                return prompts_of(response), billed
            except GenerationError as exc:
                error = exc
        if not error.retryable or attempt >= MAX_ATTEMPTS:
            error.usage = billed
            raise error
        log.info("describe %s attempt %d: %s", model, attempt, error.code)
        await deps.sleep(min(8.0, 0.5 * 2**attempt))


def _error(item: ChunkItem, code: ErrorCode, message: str, *, usage: TokenUsage | None = None) -> ItemError:
    return ItemError(index=item.index, code=code, message=message, retryable=code.is_retryable, usage=usage)


__all__ = [
    "MAX_ATTEMPTS",
    "clean_prompt",
    "describe_config",
    "describe_contents",
    "prompts_of",
    "response_schema",
    "run_describe",
    "snap_ratio",
]
