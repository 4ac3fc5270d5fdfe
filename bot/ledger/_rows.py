"""Conversions between ledger rows and domain values: timestamps, JSON columns, ids and row mappers."""

import json
import secrets
from collections.abc import Collection
from datetime import UTC, datetime
from typing import cast

import aiosqlite

from bot.core.models import (
    Chunk,
    ChunkId,
    ChunkStatus,
    Group,
    GroupId,
    Image,
    ImageId,
    Item,
    ItemInputs,
    ItemStatus,
    Job,
    JobId,
    JobKind,
    JobParams,
    JobStatus,
    Priority,
    UserId,
)
from worker.contract import TokenUsage

NOTE_HOLD_FROM = "hold_from"
"""A job note: items of this index and above are held (a trial runs the ones below first); deleted to release them."""
NO_HOLD = 2**63 - 1  # a bound no item index reaches
# The index from which the items of the row `jobs` are held (`NO_HOLD` when none are), for scheduling queries.
HOLD_FROM_SQL = (
    "coalesce((SELECT CAST(value AS INTEGER) FROM job_notes WHERE job_notes.job_id = jobs.id"
    " AND job_notes.name = 'hold_from'), 9223372036854775807)"
)


def db_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the ledger")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def opt_time(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def req_time(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


def json_object(text: object) -> dict[str, object]:
    data = json.loads(str(text))
    if not isinstance(data, dict):
        raise ValueError("ledger JSON column does not hold an object")
    return cast("dict[str, object]", data)


def placeholders(values: Collection[object]) -> str:
    return ",".join("?" * len(values))


def group_from(row: aiosqlite.Row) -> Group:
    return Group(
        id=GroupId(row["id"]),
        name=row["name"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        thread_id=row["thread_id"],
        created_at=req_time(row["created_at"]),
        owner_id=row["owner_id"],
    )


def job_from(row: aiosqlite.Row) -> Job:
    return Job(
        id=JobId(row["id"]),
        kind=JobKind(row["kind"]),
        owner_id=UserId(row["owner_id"]),
        guild_id=row["guild_id"],
        group_id=None if row["group_id"] is None else GroupId(row["group_id"]),
        prompt=row["prompt"],
        params=JobParams.from_json(json_object(row["params"])),
        parent_image_id=None if row["parent_image_id"] is None else ImageId(row["parent_image_id"]),
        status=JobStatus(row["status"]),
        priority=Priority(row["priority"]),
        idempotency_key=row["idempotency_key"],
        created_at=req_time(row["created_at"]),
        started_at=opt_time(row["started_at"]),
        finished_at=opt_time(row["finished_at"]),
        total=row["total"],
        ok=row["ok"],
        failed=row["failed"],
        cancelled=row["cancelled"],
        error=row["error"],
    )


def item_from(row: aiosqlite.Row) -> Item:
    return Item(
        job_id=JobId(row["job_id"]),
        index=row["idx"],
        inputs=ItemInputs.from_json(json_object(row["inputs"])),
        prompt=row["prompt"],
        seed=row["seed"],
        output_key=row["output_key"],
        status=ItemStatus(row["status"]),
        attempts=row["attempts"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        retry_at=opt_time(row["retry_at"]),
        chunk_id=None if row["chunk_id"] is None else ChunkId(row["chunk_id"]),
        width=row["width"],
        height=row["height"],
        cost_usd=row["cost_usd"],
        usage=None if row["usage"] is None else TokenUsage.model_validate_json(row["usage"]),
    )


def chunk_from(row: aiosqlite.Row) -> Chunk:
    return Chunk(
        id=ChunkId(row["id"]),
        job_id=JobId(row["job_id"]),
        seq=row["seq"],
        runpod_id=row["runpod_id"],
        indices=tuple(int(i) for i in json.loads(row["indices"])),
        status=ChunkStatus(row["status"]),
        concurrency=row["concurrency"],
        attempt=row["attempt"],
        created_at=req_time(row["created_at"]),
        submitted_at=opt_time(row["submitted_at"]),
        finished_at=opt_time(row["finished_at"]),
        remote_status=row["remote_status"],
        last_progress=None if row["last_progress"] is None else json_object(row["last_progress"]),
    )


def image_from(row: aiosqlite.Row) -> Image:
    return Image(
        id=ImageId(row["id"]),
        job_id=JobId(row["job_id"]),
        index=row["idx"],
        key=row["key"],
        group_id=None if row["group_id"] is None else GroupId(row["group_id"]),
        owner_id=UserId(row["owner_id"]),
        width=row["width"],
        height=row["height"],
        is_favourite=bool(row["favourite"]),
        message_id=row["message_id"],
        created_at=req_time(row["created_at"]),
        deleted_at=opt_time(row["deleted_at"]),
    )


def new_id(prefix: str) -> str:
    """Return a fresh random id such as `j_3f9a0c1d2e4b5a69` (lowercase, safe in storage keys and custom ids)."""
    return f"{prefix}_{secrets.token_hex(8)}"
