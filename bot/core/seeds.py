"""Deterministic naming: job ids, per-item seeds and output keys."""

import hashlib

from bot.core.models import JobId

MAX_SEED = 2**31 - 1


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


def png_dimensions(header: bytes) -> tuple[int, int] | None:
    """Return (width, height) from the first 24 bytes of a PNG, or None when they are not a PNG header."""
    if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return None
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
