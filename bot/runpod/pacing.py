"""`RoutePacer`: keeps the bot under RunPod's documented rate limits instead of learning them from 429s.

RunPod limits each route family to N requests per 10 s and M at once (`bot.runpod.wire.RUNPOD_ROUTE_LIMITS`, with
its sources); a 429 carries no `Retry-After`, so a client that only backs off can exhaust its retries inside one
window. The pacer holds a request until its family has room: at most M in flight, and at most N started within any
window counted back from when earlier requests *ended* (an ended request has surely reached RunPod, so RunPod's own
count of the window never sees more than N, whatever the network delay). `headroom` keeps a margin below N.
"""

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.runpod.wire import RUNPOD_ROUTE_LIMITS, RouteLimit


@dataclass(slots=True)
class _Family:
    allowed: int
    window_s: float
    slots: asyncio.Semaphore | None
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    ended: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class RoutePacer:
    """Waits before each request so that no route family goes over its limits.

    Args:
        limits: family -> limit; RunPod's documented ones by default.
        headroom: the share of each window's requests the pacer uses (0.9: 900 of `/run`'s 1000 per 10 s).
        clock, sleep: monotonic seconds and the sleep to wait with (tests inject them).
    """

    def __init__(
        self,
        limits: Mapping[str, RouteLimit] | None = None,
        *,
        headroom: float = 0.9,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self._families = {
            name: _Family(
                allowed=max(1, math.floor(limit.requests * headroom)),
                window_s=limit.window_s,
                slots=asyncio.Semaphore(limit.concurrent) if limit.concurrent is not None else None,
            )
            for name, limit in (RUNPOD_ROUTE_LIMITS if limits is None else limits).items()
        }
        self._clock = clock
        self._sleep = sleep

    @asynccontextmanager
    async def slot(self, family: str | None) -> AsyncIterator[None]:
        """Hold one request of `family` (None or an unlimited family: no wait) from its start to its end."""
        state = self._families.get(family or "")
        if state is None:
            yield
            return
        if state.slots is not None:
            await state.slots.acquire()
        try:
            async with state.turn:  # first come, first served within the family
                await self._wait_for_room(state)
                state.in_flight += 1
            try:
                yield
            finally:
                state.in_flight -= 1
                state.ended.append(self._clock())
        finally:
            if state.slots is not None:
                state.slots.release()

    async def _wait_for_room(self, state: _Family) -> None:
        while True:
            now = self._clock()
            while state.ended and now - state.ended[0] >= state.window_s:
                state.ended.popleft()
            if state.in_flight + len(state.ended) < state.allowed:
                return
            if state.ended:
                await self._sleep(state.ended[0] + state.window_s - now)
            else:
                await self._sleep(0.01)  # the window is full of requests in flight: wait for one to end
