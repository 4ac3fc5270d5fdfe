"""Requests the dispatcher tests submit; the dispatcher and its fakes are `tests/protocol/conftest.py`'s."""

from bot.core.models import JobKind, JobParams, JobRequest, NewItem, UserId
from tests.protocol.conftest import MakeDispatcher

__all__ = ["MakeDispatcher", "batch", "grid"]

MODEL = "gemini-2.5-flash-image"


def grid(
    *, owner: int = 1, key: str | None = None, prompt: str = "a cat in a hat", is_admin: bool = False
) -> JobRequest:
    return JobRequest(
        kind=JobKind.GRID,
        owner_id=UserId(owner),
        prompt=prompt,
        params=JobParams(model=MODEL, aspect_ratio="1:1", n=4),
        idempotency_key=key,
        is_admin=is_admin,
    )


def batch(n: int, *, owner: int = 1, key: str | None = None) -> JobRequest:
    return JobRequest(
        kind=JobKind.BATCH,
        owner_id=UserId(owner),
        prompt="make it watercolour",
        params=JobParams(model=MODEL, seed=1000),
        items=tuple(NewItem() for _ in range(n)),
        idempotency_key=key,
    )
