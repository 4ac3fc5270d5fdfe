"""Deterministic naming: job ids, per-item seeds and output keys."""

import hashlib

from bot.core.models import JobId
from worker.contract import MAX_SEED


def seed_base(job_id: JobId, seed: int | None) -> int:
    """Return the job's seed base: the requested seed, else one derived from the job id."""
    if seed is not None:
        return seed % (MAX_SEED + 1)
    digest = hashlib.sha256(job_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") & MAX_SEED


def item_seed(base: int, index: int) -> int:
    """Return item `index`'s seed: the base plus the index, wrapped into Gemini's seed range."""
    return (base + index) % (MAX_SEED + 1)


def output_key(job_id: JobId, index: int) -> str:
    """Return where item `index` of the job is written; deterministic, so a retry overwrites instead of adding."""
    return f"outputs/{job_id}/{index:05d}.png"
