"""How long an interactive job should take, from how long the recent ones of its model and size took (pure).

The bot never sees a Gemini call itself: a worker makes it on RunPod. What a user waits for is the time from the
job's first chunk going out (`Started`) to its result (`JobFinished`, its slowest image): RunPod's queue, the
worker, the Gemini calls (a grid's run side by side) and the poll that brings the result back. `CallTimes` keeps the
last few of those waits per model and size and answers their median, so one slow call does not move the estimate
much; before any was measured it answers the configured typical time (`EXPECTED_LATENCY_S`, the same figure the
dispatcher sizes chunks by). A job's expected time is fixed when it starts, so its own images do not move it.
"""

from collections import deque
from dataclasses import dataclass, field
from statistics import median

SAMPLES_KEPT = 20  # per model and size: recent enough to follow a slower Gemini, enough to shrug off one outlier


def size_key(image_size: str | None) -> str:
    """Return the size an estimate is kept under: the size asked for, 1K when none was (Gemini's default)."""
    return (image_size or "1K").upper()


@dataclass(slots=True)
class CallTimes:
    """The recent waits for an image, per (model, size), and the expected wait they give.

    Args:
        default_s: the expected wait before anything of a model and size was measured.
        kept: how many recent waits are kept per model and size.
    """

    default_s: float
    kept: int = SAMPLES_KEPT
    _waits: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def observe(self, model: str, image_size: str | None, wait_s: float) -> None:
        """Record that a job of `model` at `image_size` had its result `wait_s` after it started."""
        if wait_s <= 0:
            return
        key = (model, size_key(image_size))
        self._waits.setdefault(key, deque(maxlen=self.kept)).append(wait_s)

    def expected_s(self, model: str, image_size: str | None) -> float:
        """Return how long a job of `model` at `image_size` should take: the median recent wait, else the default."""
        waits = self._waits.get((model, size_key(image_size)))
        return median(waits) if waits else self.default_s

    def measured(self, model: str, image_size: str | None) -> int:
        """Return how many waits the estimate for `model` at `image_size` rests on (0: the default)."""
        return len(self._waits.get((model, size_key(image_size)), ()))


__all__ = ["SAMPLES_KEPT", "CallTimes", "size_key"]
