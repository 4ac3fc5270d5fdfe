"""How a job's items are cut into chunks (RunPod jobs), and how long RunPod should give each one."""

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkPolicy:
    """Chunk sizes and RunPod time limits.

    Interactive jobs (grids of up to `max_interactive_items`) go as one chunk, so their images arrive together.

    Batch chunks are sized in time, not in items: as many rounds of `concurrency` calls as fill `target_chunk_s`
    at the round time chunks report (`RoundTime`), up to `max_batch_items`. Each chunk costs the same fixed time
    to hand over (a poll, a submission, a worker picking it up, its first call), during which its calls are idle,
    so a chunk must last many times that. At 10-20 s a Gemini image that is 3-6 rounds (the 10-25 items the plan
    first named); against the benchmark's 0.5 s server it is up to `max_batch_items`, where 25 items would spend a
    fifth of their time in hand-overs. A grid waiting for batch calls to free up waits at most about
    `target_chunk_s`, since a chunk frees its calls as its last round finishes. Near a batch's end the rounds are
    cut so that what is left spreads over the whole window, in proportion to each chunk's calls, and the last chunks
    end together.

    `executionTimeout` is the expected running time with a margin: `ceil(items / concurrency)` rounds of
    `item_latency_s`, times `margin`, plus `startup_s` for a cold worker, clamped to
    `[min_execution_s, max_execution_s]`. `ttl` (which RunPod counts from queueing) adds `queue_allowance_s`.
    `item_latency_s` is also the round time assumed before any chunk has reported one.
    """

    max_interactive_items: int = 4
    target_chunk_s: float = 60.0
    max_batch_items: int = 256  # worker.contract.MAX_ITEMS_PER_CHUNK: the worker refuses more
    item_latency_s: float = 20.0
    margin: float = 2.0
    startup_s: float = 60.0
    min_execution_s: float = 120.0
    max_execution_s: float = 3600.0
    queue_allowance_s: float = 1800.0

    def interactive_chunk_size(self, remaining: int) -> int:
        """Return how many of an interactive job's `remaining` ready items its next chunk takes."""
        return max(0, min(remaining, self.max_interactive_items))

    def batch_chunk_size(self, *, ready: int, left: int, concurrency: int, round_s: float, window: int) -> int:
        """Return how many of a batch's `ready` items its next chunk takes, run `concurrency` at a time.

        Args:
            ready: the batch's items ready to submit.
            left: the batch's items not done yet: `ready` and those in chunks still running.
            concurrency: the calls the chunk gets.
            round_s: how long one round of calls takes (`RoundTime.seconds`).
            window: the calls the whole budget allows now. Near the end a chunk gets no more than its share of
                `left` spread over the window (`concurrency / window` of it), so it ends about when the chunks
                already running and those submitted next to it do.
        """
        if ready <= 0 or concurrency <= 0:
            return 0
        rounds = max(1, round(self.target_chunk_s / max(round_s, 1e-3)))
        size = min(concurrency * rounds, self.max_batch_items)
        if size < ready and size > concurrency:
            size -= size % concurrency  # whole rounds: a part-filled last round idles calls the chunk holds
        # Near the end: this chunk's share of what is left, in proportion to its calls, so that every chunk of
        # the last wave ends about together (a part-filled last round costs less than a chunk left running on
        # its own, or a small wave of left-overs after it). Never under one round: less would split a round's
        # worth of items over several chunks for nothing.
        share = max(concurrency, math.ceil(concurrency * max(ready, left) / max(1, window)))
        return min(ready, size, share)

    def execution_timeout_ms(self, items: int, concurrency: int) -> int:
        """Return RunPod's `executionTimeout` for a chunk of `items` run `concurrency` at a time."""
        rounds = math.ceil(max(1, items) / max(1, concurrency))
        seconds = self.startup_s + rounds * self.item_latency_s * self.margin
        return round(min(self.max_execution_s, max(self.min_execution_s, seconds)) * 1000)

    def ttl_ms(self, items: int, concurrency: int) -> int:
        """Return RunPod's `ttl` (queue time plus execution time) for the chunk."""
        return self.execution_timeout_ms(items, concurrency) + round(self.queue_allowance_s * 1000)


@dataclass(slots=True, kw_only=True)
class RoundTime:
    """How long one round of a chunk's calls takes, from what finished chunks report (a moving average).

    A chunk that made `made` images `concurrency` at a time in `execution_ms` ran `ceil(made / concurrency)`
    rounds. Its start-up and hand-back count in, so the figure is a little long, which only makes chunks a
    little shorter. Images found already made cost no call and are left out (`made` counts calls).

    `seconds` starts as an assumption (`ChunkPolicy.item_latency_s`), which the first report replaces outright:
    averaged in, an assumed 20 s against measured 0.5 s rounds would still read 2.5 s after seven reports.
    """

    seconds: float
    weight: float = 0.3  # of the newest chunk
    measured: bool = False

    def observe(self, *, execution_ms: int | None, made: int, concurrency: int) -> None:
        """Fold in one finished chunk; one with no calls or no execution time says nothing."""
        if execution_ms is None or execution_ms <= 0 or made <= 0 or concurrency <= 0:
            return
        sample = execution_ms / 1000 / math.ceil(made / concurrency)
        self.seconds = self.seconds + self.weight * (sample - self.seconds) if self.measured else sample
        self.measured = True
