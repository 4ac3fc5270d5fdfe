"""RunPod's documented client-face rate limits, enforced: N requests per window and M at once, per route family.

The families and numbers are `bot.runpod.wire.RUNPOD_ROUTE_LIMITS` (sources cited there): `/run` 1000 per 10 s and
200 concurrent, `/runsync` 2000/400, `/status` + `/stream` 2000/400, `/cancel` 100/20, `/purge-queue` 2 per 10 s.
A request over either limit is answered 429 at once, with nothing of it done. RunPod documents neither a
`Retry-After` header nor the 429's body, so the stand-in sends no `Retry-After` (a client must pace itself, not wait
to be told) and a body in the shape of RunPod's other errors, `{"error": "..."}`.
"""

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.runpod.wire import RUNPOD_ROUTE_LIMITS, RouteLimit


@dataclass(slots=True)
class _Family:
    limit: RouteLimit
    sent: deque[float] = field(default_factory=deque)  # admission times within the last window
    active: int = 0
    refused: int = 0


class RouteGate:
    """Counts each family's requests in a sliding window and in flight; refuses what is over either limit.

    Args:
        limits: family -> limit (default RunPod's documented ones); tests tighten them.
        clock: monotonic seconds.
    """

    def __init__(
        self, limits: Mapping[str, RouteLimit] | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._families = {name: _Family(limit) for name, limit in (limits or RUNPOD_ROUTE_LIMITS).items()}
        self._clock = clock

    def admit(self, family: str | None) -> str | None:
        """Count one request of `family`; return why it is refused (then nothing is counted), or None."""
        state = self._families.get(family or "")
        if state is None:
            return None
        now = self._clock()
        while state.sent and now - state.sent[0] >= state.limit.window_s:
            state.sent.popleft()
        if len(state.sent) >= state.limit.requests:
            state.refused += 1
            return f"rate limit exceeded: {state.limit.requests} requests per {state.limit.window_s:g} s on /{family}"
        if state.limit.concurrent is not None and state.active >= state.limit.concurrent:
            state.refused += 1
            return f"rate limit exceeded: {state.limit.concurrent} concurrent requests on /{family}"
        state.sent.append(now)
        state.active += 1
        return None

    def release(self, family: str | None) -> None:
        """End one admitted request of `family`."""
        state = self._families.get(family or "")
        if state is not None:
            state.active = max(0, state.active - 1)

    def refused(self, family: str) -> int:
        """How many requests of `family` were answered 429 so far."""
        state = self._families.get(family)
        return state.refused if state is not None else 0
