"""Every dispatcher knob in one value: caps, chunking, retries and the Gemini budget."""

from dataclasses import dataclass, field
from datetime import timedelta

from bot.core.admission import CapPolicy
from bot.core.chunking import ChunkPolicy
from bot.core.outage import OutagePolicy
from bot.core.relax import RelaxPolicy
from bot.core.retry import RetryPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchPolicy:
    """The dispatcher's configuration (pure); `bot.dispatch.policy_from_settings` builds it from settings."""

    gemini_concurrency: int = 10
    max_chunk_concurrency: int | None = 8
    rate_limit_cooldown: timedelta = timedelta(seconds=10)
    caps: CapPolicy = field(default_factory=CapPolicy)
    chunks: ChunkPolicy = field(default_factory=ChunkPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long jobs wait through a RunPod outage, and how often the breaker probes it meanwhile.
    outage: OutagePolicy = field(default_factory=OutagePolicy)
    # A chunk whose /run failed before RunPod took it is tried again after this long (no attempt is counted).
    submit_retry_delay: timedelta = timedelta(seconds=5)
    # RunPod's lowPriority jobs do not make the endpoint scale up; off by default so a batch never stalls.
    batch_low_priority: bool = False
    # A cancelled job's chunk is settled (what it made recorded from the store) this long after RunPod reported it
    # final: a worker told to stop may still be finishing the write of an image it had made.
    cancel_settle: timedelta = timedelta(seconds=5)
    # Relax batches: parts (Gemini batch jobs), how many at once, how often they are looked at.
    relax: RelaxPolicy = field(default_factory=RelaxPolicy)
    # What one second of RunPod worker time costs, in USD (RUNPOD_PRICE_PER_S): a chunk's `executionTime` at it.
    runpod_price_per_s: float = 0.00016
    # The budget pass (pausing jobs at their money caps, settling reservations) runs when outcomes were recorded or
    # a job was submitted, resumed or retried since the last one, and at least this often otherwise; a round with
    # nothing new skips it, so a large ledger does not pay for its queries every iteration.
    budget_pass_every: timedelta = timedelta(seconds=5)
