"""The dispatcher: turns ledger jobs into RunPod chunks, polls them, records results, retries and resumes.

One `run_once()` is one iteration (tests drive it directly, like arq's burst mode):

1. poll every chunk in flight (`RunpodGateway.status`) and record what it reports: progress results as they
   come, the result manifest when COMPLETED; COMPLETED without a manifest, FAILED, TIMED_OUT, CANCELLED by
   someone else, and NOT_FOUND (RunPod forgot it) are reconciled from storage: an item whose deterministic
   output key exists is made, the others are retried per the retry policy;
2. finish jobs with nothing left to do, then let waiting jobs of their owners start;
3. submit new chunks while the Gemini budget has room: interactive jobs first, batches round robin;
4. tell listeners about queue positions that changed.

Events go to every `subscribe()`r. Front ends only `submit()` requests and listen; `run_forever()` runs the loop.
"""

from bot.dispatch.admission import CancelResult, InvalidRequestError, SubmitResult, SubmitStatus
from bot.dispatch.bus import EventBus, Subscription
from bot.dispatch.loop import Dispatcher, RestartReport, policy_from_settings

__all__ = [
    "CancelResult",
    "Dispatcher",
    "EventBus",
    "InvalidRequestError",
    "RestartReport",
    "SubmitResult",
    "SubmitStatus",
    "Subscription",
    "policy_from_settings",
]
