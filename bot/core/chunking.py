"""How a job's items are cut into chunks (RunPod jobs), and how long RunPod should give each one."""

import math
from dataclasses import dataclass

from bot.core.models import Priority


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkPolicy:
    """Chunk sizes and RunPod time limits.

    Interactive jobs (grids of up to `max_interactive_items`) go as one chunk, so their images arrive together.
    Batches go in chunks of `min_batch_items`..`max_batch_items`, balanced so the last one is not a sliver.

    `executionTimeout` is the expected running time with a margin: `ceil(items / concurrency)` rounds of
    `item_latency_s`, times `margin`, plus `startup_s` for a cold worker, clamped to
    `[min_execution_s, max_execution_s]`. `ttl` (which RunPod counts from queueing) adds `queue_allowance_s`.
    """

    max_interactive_items: int = 4
    min_batch_items: int = 10
    max_batch_items: int = 25
    item_latency_s: float = 20.0
    margin: float = 2.0
    startup_s: float = 60.0
    min_execution_s: float = 120.0
    max_execution_s: float = 3600.0
    queue_allowance_s: float = 1800.0

    def next_chunk_size(self, remaining: int, priority: Priority) -> int:
        """Return how many of `remaining` ready items the next chunk takes."""
        if remaining <= 0:
            return 0
        if priority is Priority.INTERACTIVE:
            return min(remaining, self.max_interactive_items)
        if remaining <= self.max_batch_items:
            return remaining
        chunks = math.ceil(remaining / self.max_batch_items)
        return max(self.min_batch_items, math.ceil(remaining / chunks))

    def execution_timeout_ms(self, items: int, concurrency: int) -> int:
        """Return RunPod's `executionTimeout` for a chunk of `items` run `concurrency` at a time."""
        rounds = math.ceil(max(1, items) / max(1, concurrency))
        seconds = self.startup_s + rounds * self.item_latency_s * self.margin
        return round(min(self.max_execution_s, max(self.min_execution_s, seconds)) * 1000)

    def ttl_ms(self, items: int, concurrency: int) -> int:
        """Return RunPod's `ttl` (queue time plus execution time) for the chunk."""
        return self.execution_timeout_ms(items, concurrency) + round(self.queue_allowance_s * 1000)
