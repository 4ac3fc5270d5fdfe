"""RunPod payloads: the worker contract's chunk input built from ledger items, and its output parsed back."""

import logging
from collections.abc import Sequence

from pydantic import ValidationError

from bot.core.models import Item, ItemInputs, Job, JobKind, JobParams
from bot.runpod.types import RemoteJob, RemoteStatus
from worker.contract import (
    DESCRIBE_KIND,
    ChunkInput,
    ChunkItem,
    ChunkOutput,
    ChunkProgress,
    ChunkResult,
    ErrorCode,
    parse_top_level_error,
)

log = logging.getLogger(__name__)


def item_payload(
    prompt: str, inputs: ItemInputs, params: JobParams, *, index: int, seed: int, key: str
) -> dict[str, object]:
    """Return one item's entry of a chunk input, as the worker contract spells it."""
    payload: dict[str, object] = {
        "index": index,
        "prompt": prompt,
        "ref_keys": list(inputs.ref_keys),
        "aspect_ratio": inputs.aspect_ratio or params.aspect_ratio,  # an item's own options win over the job's
        "image_size": inputs.image_size or params.image_size,
        "seed": seed,
        "output_key": key,
    }
    if inputs.edit is not None:
        payload["edit"] = {"source_key": inputs.edit.source_key, "history": list(inputs.edit.history)}
    if inputs.region is not None:
        left, top, right, bottom = inputs.region
        payload["region"] = {"left": left, "top": top, "right": right, "bottom": bottom}
    return payload


def chunk_items(job: Job, items: Sequence[Item]) -> list[ChunkItem]:
    """Build the contract's entries of a job's items (a chunk's, or a relax part's of up to `MAX_RELAX_ITEMS`).

    Raises:
        ValidationError: an item the worker would refuse.
    """
    return [
        ChunkItem.model_validate(
            item_payload(
                item.prompt or job.prompt,
                item.inputs,
                job.params,
                index=item.index,
                seed=item.seed,
                key=item.output_key,
            )
        )
        for item in items
    ]


def chunk_input(job: Job, items: Sequence[Item], concurrency: int, *, seq: int) -> ChunkInput:
    """Build the RunPod input of a chunk of a job's items.

    Raises:
        ValidationError: an item the worker would refuse.
    """
    entries = [
        item_payload(
            item.prompt or job.prompt, item.inputs, job.params, index=item.index, seed=item.seed, key=item.output_key
        )
        for item in items
    ]
    payload: dict[str, object] = {
        "job_id": job.id,
        "chunk": seq,
        "model": job.params.model,
        "concurrency": max(1, concurrency),
        "items": entries,
    }
    if job.kind is JobKind.DESCRIBE:
        payload["kind"] = DESCRIBE_KIND  # the worker describes each item's image instead of making one
    return ChunkInput.model_validate(payload)


def parse_output(data: object) -> ChunkProgress | ChunkResult | None:
    """Parse a RunPod job's output as a progress report or a result manifest (None when it is neither)."""
    if data is None:
        return None
    try:
        return ChunkOutput.validate_python(data)
    except ValidationError:
        log.warning("runpod output is not a progress report or result manifest", extra={"action": "poll"})
        return None


def failure_of(remote: RemoteJob) -> tuple[ErrorCode | None, str]:
    """Return the error code (if the worker gave one) and a message for a RunPod job that ended without a manifest."""
    if remote.error:
        return parse_top_level_error(remote.error)
    return None, {
        RemoteStatus.COMPLETED: "completed without a result manifest",
        RemoteStatus.TIMED_OUT: "timed out on RunPod",
        RemoteStatus.NOT_FOUND: "forgotten by RunPod",
        RemoteStatus.CANCELLED: "cancelled on RunPod",
    }.get(remote.status, f"ended {remote.status.value}")
