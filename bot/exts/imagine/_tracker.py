"""One message per job, kept in step with the dispatcher: waiting → position → generating… → the result.

Edits are paced twice: a job's message at most once per `progress_edit_interval_s` (final states go at once), and
each channel through one lane that sends at most 4 edits per 5 s (Discord allows 5), coalescing a job's pending
updates so only the newest goes out; a 429 is retried after its `retry_after`. While the interaction token is
fresh the message is edited through it; an older token (or none, after a restart or for a reply edit) means a
channel message instead.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from bot.core.eta import CallTimes
from bot.core.events import (
    Event,
    JobCancelled,
    JobFailed,
    JobFinished,
    PositionChanged,
    Progress,
    Queued,
    ServiceDown,
    ServiceRestored,
    Started,
)
from bot.core.models import Job, JobId, JobKind
from bot.core.render import (
    EditPacer,
    WindowLimiter,
    delayed_state,
    discord_time,
    generating_state,
    lifecycle_line,
    result_who,
    waiting_state,
    with_notes,
)
from bot.exts._send import fit_message

if TYPE_CHECKING:
    from datetime import datetime

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
STATUS, RESULT = "status", "result"

Action = Callable[[], Awaitable[None]]


class ChannelLanes:
    """Sends message edits channel by channel: rate-limited, coalesced per key, retried on 429."""

    def __init__(self, *, limit: int = 4, window_s: float = 5.0) -> None:
        self._limit, self._window_s = limit, window_s
        self._pending: dict[int, dict[str, Action]] = {}
        self._wakes: dict[int, asyncio.Event] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._limiters: dict[int, WindowLimiter] = {}
        self._idle: dict[int, asyncio.Event] = {}

    def submit(self, channel_id: int, key: str, action: Action) -> None:
        """Queue `action` for the channel; a pending action with the same key is replaced."""
        pending = self._pending.setdefault(channel_id, {})
        pending[key] = action
        self._idle.setdefault(channel_id, asyncio.Event()).clear()
        self._wakes.setdefault(channel_id, asyncio.Event()).set()
        if channel_id not in self._tasks:
            self._tasks[channel_id] = asyncio.create_task(self._run(channel_id), name=f"peel-lane-{channel_id}")

    async def drain(self) -> None:
        """Wait until every queued action has run (tests and shutdown)."""
        for event in list(self._idle.values()):
            await event.wait()

    async def close(self) -> None:
        """Stop every lane."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _run(self, channel_id: int) -> None:
        loop = asyncio.get_running_loop()
        pending, wake = self._pending[channel_id], self._wakes[channel_id]
        limiter = self._limiters.setdefault(channel_id, WindowLimiter(limit=self._limit, window_s=self._window_s))
        while True:
            if not pending:
                self._idle[channel_id].set()
                await wake.wait()
                wake.clear()
                continue
            key = next(iter(pending))
            action = pending.pop(key)
            delay = limiter.wait_s(loop.time())
            if delay > 0:  # a window frees up at a known time; no event to wait for
                await asyncio.sleep(delay)
            limiter.record(loop.time())
            await self._attempt(key, action)

    @staticmethod
    async def _attempt(key: str, action: Action) -> None:
        for attempt in range(4):
            try:
                await action()
            except discord.HTTPException as exc:
                if exc.status == 429 and attempt < 3:
                    retry_after = _retry_after(exc)
                    log.warning("edit of %s rate-limited; retrying in %.1fs", key, retry_after)
                    await asyncio.sleep(retry_after)
                    continue
                log.warning("could not update the message of %s: %s", key, exc)
            except Exception:  # a lane outlives one bad update
                log.exception("updating the message of %s failed", key)
            return


def _retry_after(exc: discord.HTTPException) -> float:
    body: Any = getattr(exc, "text", "")
    try:
        import json

        return max(0.1, float(json.loads(body).get("retry_after", 1.0)))
    except (ValueError, TypeError, AttributeError):
        return 1.0


@dataclass(slots=True, kw_only=True)
class Tracked:
    """A job whose message Peel keeps up to date."""

    job_id: JobId
    channel_id: int
    message_id: int | None
    owner_id: int
    display: str
    label: str
    interaction: discord.Interaction[Any] | None
    token_at: float
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    position: int | None = None
    started_at: float | None = None
    done: int = 0
    total: int = 0
    model: str | None = None  # the job's model and size, from its first event: its expected time is theirs
    image_size: str | None = None
    timed: bool = False  # started_at is when its first chunk went out (not a restart's guess): its end is timed
    expected_s: float | None = None  # how long it should take, fixed when it starts (its own images do not move it)
    notes: tuple[str, ...] = ()  # lines shown under the job's line (ignored parameters, a snapped ratio, …)
    final: bool = False
    post_new: bool = False  # adopted after a restart: the result goes in a new channel message
    pacer: EditPacer = field(default_factory=EditPacer)

    @property
    def mention(self) -> str:
        """The owner's mention."""
        return f"<@{self.owner_id}>"

    @property
    def pings(self) -> discord.AllowedMentions:
        """Who the job's lines may ping: its owner alone, as Midjourney pings the requester.

        Never a user the prompt names (the echo breaks such mentions up too), a role or everyone.
        """
        return discord.AllowedMentions.none().merge(discord.AllowedMentions(users=[discord.Object(self.owner_id)]))

    def line(self, state: str) -> str:
        """Return the message for a state: the job's line, then its notes, one a line."""
        return with_notes(lifecycle_line(self.display, result_who(self.label, self.mention), state), self.notes)


Finisher = Callable[[Tracked, Job], Awaitable[None]]
Failer = Callable[[Tracked, Job, str], Awaitable[None]]


class JobTracker:
    """Listens to the dispatcher and keeps each tracked job's message current.

    Args:
        bot: the connected client (for channel messages).
        finish: posts a finished job's result (grid or single image) for a tracked job.
        fail: shows why a job failed.
        interval_s: the least time between two progress edits of one message.
        token_max_age_s: how long an interaction token is trusted for edits (Discord's last 15 minutes).
        channel_edit_window_s: the window in which at most 4 edits go to one channel (Discord allows 5 per 5 s).
        expected_s: how long a job should take before any of its model and size was timed (`EXPECTED_LATENCY_S`).
    """

    def __init__(
        self,
        bot: discord.Client,
        *,
        finish: Finisher,
        fail: Failer,
        interval_s: float,
        token_max_age_s: float,
        channel_edit_window_s: float = 5.0,
        expected_s: float = 12.0,
    ) -> None:
        self._bot = bot
        self.call_times = CallTimes(default_s=expected_s)
        self._finish, self._fail = finish, fail
        self._interval_s = interval_s
        self._token_max_age_s = token_max_age_s
        self.lanes = ChannelLanes(window_s=channel_edit_window_s)
        self._tracked: dict[JobId, Tracked] = {}
        self._early: dict[JobId, list[Event]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._down: dict[str, datetime] = {}  # services unreachable, since when: every job waits for them

    def now(self) -> float:
        """The loop's monotonic time."""
        return asyncio.get_running_loop().time()

    def start(self) -> None:
        """Start the ticker that refreshes elapsed times."""
        self._ticker = asyncio.create_task(self._tick(), name="peel-progress-ticker")

    async def close(self) -> None:
        """Stop the ticker and the lanes."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.lanes.close()

    def get(self, job_id: JobId) -> Tracked | None:
        """Return a tracked job."""
        return self._tracked.get(job_id)

    def token_fresh(self, t: Tracked) -> bool:
        """Tell whether the job's interaction token may still be used."""
        return t.interaction is not None and self.now() - t.token_at < self._token_max_age_s

    async def track(self, t: Tracked) -> None:
        """Start keeping a job's message current, replaying anything that happened before it was known."""
        self._tracked[t.job_id] = t
        for event in self._early.pop(t.job_id, []):
            await self.handle(event)

    async def handle(self, event: Event) -> None:
        """Apply one dispatcher event."""
        if isinstance(event, ServiceDown | ServiceRestored):
            if isinstance(event, ServiceDown):
                self._down[event.service] = event.since
            elif self._down.pop(event.service, None) is None:
                return  # the end of a refusal, not of an outage: no message said "delayed"
            for tracked in list(self._tracked.values()):
                self._update(tracked, force=True)
            return
        job = getattr(event, "job", None)
        if not isinstance(job, Job) or job.kind is JobKind.BATCH:
            return
        t = self._tracked.get(job.id)
        if t is None:
            early = self._early.setdefault(job.id, [])
            early.append(event)
            if len(self._early) > 500:  # jobs of another front end (the CLI) are never tracked here
                self._early.pop(next(iter(self._early)))
            return
        if t.final:
            return
        t.model, t.image_size = job.params.model, job.params.image_size
        if isinstance(event, Queued | PositionChanged):
            t.position = event.position
            self._update(t)
        elif isinstance(event, Started):
            t.timed = t.started_at is None
            t.started_at = t.started_at or self.now()
            t.total = job.total
            self._update(t)
        elif isinstance(event, Progress):
            t.started_at = t.started_at or self.now()
            t.done, t.total = event.done + event.failed, event.total
            self._update(t)
        elif isinstance(event, JobFinished):
            if t.timed and t.started_at is not None:  # the wait for the whole result: its slowest image
                self.call_times.observe(job.params.model, job.params.image_size, self.now() - t.started_at)
            self._close(t)
            self.lanes.submit(t.channel_id, t.job_id, lambda: self._finish(t, event.job))
        elif isinstance(event, JobFailed):
            self._close(t)
            self.lanes.submit(t.channel_id, t.job_id, lambda: self._fail(t, event.job, event.reason))
        elif isinstance(event, JobCancelled):
            self._close(t)

            async def cancelled() -> None:
                await self.edit(t, content=t.line("cancelled"), view=None)

            self.lanes.submit(t.channel_id, t.job_id, cancelled)

    def _close(self, t: Tracked) -> None:
        t.final = True
        self._tracked.pop(t.job_id, None)

    def state_of(self, t: Tracked) -> str:
        """Return the state a tracked job's message shows now."""
        # RunPod's outage first: nothing reaches Gemini without it.
        service = next((name for name in ("runpod", "gemini") if name in self._down), next(iter(self._down), None))
        if service is not None:
            return delayed_state(discord_time(self._down[service]), service)
        if t.started_at is None:
            return waiting_state(t.position)
        if t.expected_s is None and t.model is not None:
            t.expected_s = self.call_times.expected_s(t.model, t.image_size)
        return generating_state(t.done, t.total, self.now() - t.started_at, t.expected_s)

    def _update(self, t: Tracked, *, force: bool = False) -> None:
        now = self.now()
        if not t.pacer.due(now) and not force:
            return
        t.pacer.edited(now)

        async def send() -> None:
            if not t.final:
                await self.edit(t, content=t.line(self.state_of(t)))

        self.lanes.submit(t.channel_id, t.job_id, send)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._interval_s))
            for t in list(self._tracked.values()):
                if t.started_at is not None and not self._down:
                    self._update(t)

    async def edit(self, t: Tracked, **fields: Any) -> discord.Message | discord.InteractionMessage | None:
        """Edit the job's message: through the interaction while its token is fresh, else as a channel message."""
        fields.setdefault("allowed_mentions", t.pings)  # the line echoes the prompt: only the owner may be pinged
        if self.token_fresh(t):
            assert t.interaction is not None
            return await t.interaction.edit_original_response(**fit_message(fields))
        if t.message_id is None:
            return None
        channel = self._bot.get_partial_messageable(t.channel_id)
        return await channel.get_partial_message(t.message_id).edit(**fit_message(fields))
