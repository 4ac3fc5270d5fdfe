"""Jobs put straight into a ledger for the gallery's tests and bench: items made, failed or blocked, as recorded.

`add_job` writes a job of a group with one item per prompt, runs it through the ledger's own chunk bookkeeping
(`start_chunk`, `record_outcomes`) so the rows are exactly what the dispatcher leaves, and writes a small real PNG
for each made item when a store is given.
"""

import io
from collections.abc import Sequence
from datetime import datetime

from PIL import Image

from bot.core.models import (
    Group,
    ItemInputs,
    ItemOutcome,
    ItemStatus,
    JobId,
    JobKind,
    JobParams,
    NewItem,
    NewJob,
    Priority,
    UserId,
)
from bot.ledger import Ledger, new_id
from storage.base import Store

OK = None  # an outcome: the item was made


def png(width: int = 96, height: int = 64, color: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """Return a small decodable PNG."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


async def add_job(
    ledger: Ledger,
    group: Group,
    prompts: Sequence[str],
    *,
    now: datetime,
    outcomes: Sequence[str | None] | None = None,
    sources: Sequence[str | None] | None = None,
    refs: Sequence[str] = (),
    store: Store | None = None,
    kind: JobKind = JobKind.BATCH,
    owner: int = 1,
) -> JobId:
    """Add a finished job of `group` with one item per prompt; `outcomes[i]` is None (made) or an error code."""
    job_id = JobId(new_id("j"))
    job = NewJob(
        id=job_id,
        kind=kind,
        owner_id=UserId(owner),
        prompt=prompts[0] if prompts else "",
        params=JobParams(model="gemini-2.5-flash-image", seed=7, n=len(prompts), aspect_ratio="1:1"),
        priority=Priority.for_kind(kind),
        group_id=group.id,
        guild_id=group.guild_id,
    )
    names = list(sources) if sources is not None else [None] * len(prompts)
    items = [
        NewItem(prompt=p, inputs=ItemInputs(source_name=n, ref_keys=tuple(refs)))
        for p, n in zip(prompts, names, strict=True)
    ]
    await ledger.create_job(job, items, now=now)
    chunk = await ledger.start_chunk(job_id, range(len(prompts)), concurrency=4, now=now)
    results = list(outcomes) if outcomes is not None else [OK] * len(prompts)
    made = await ledger.items(job_id)
    image = png() if store is not None else b""
    records: list[ItemOutcome] = []
    for item, code in zip(made, results, strict=True):
        if code is None:
            if store is not None:
                await store.put(item.output_key, image, content_type="image/png")
            records.append(
                ItemOutcome(index=item.index, status=ItemStatus.OK, key=item.output_key, width=96, height=64)
            )
        else:
            records.append(
                ItemOutcome(
                    index=item.index,
                    status=ItemStatus.ERROR,
                    error_code=code,
                    error_message=f"operator detail {code} at 10.0.0.7:443",
                )
            )
    await ledger.record_outcomes(chunk.id, records, now=now)
    return job_id
