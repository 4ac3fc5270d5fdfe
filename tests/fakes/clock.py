"""A clock that only moves when told to."""

from datetime import UTC, datetime, timedelta


class FakeClock:
    """Starts at a fixed instant; `advance()` moves it."""

    def __init__(self, start: datetime = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now


class Sleeps:
    """Records the backoff delays instead of sleeping (pass it where code takes a `sleep`)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
