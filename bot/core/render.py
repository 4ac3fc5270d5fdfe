"""What Peel's messages say, decided without Discord: lifecycle lines, progress bars, ETAs, custom ids, costs.

Pure: the Discord layer turns these strings and values into messages and components.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.core.budgets import Period, Refused, ScopeKind, usd_text
from bot.core.discord_limits import CUSTOM_ID, LINK_URL, fit_link_url, fit_text
from bot.core.discord_limits import MAX_CONTENT as MAX_CONTENT  # re-exported: the line builders' default limit
from bot.core.models import JobStatus
from bot.core.relax import RelaxPhase, RelaxStatus
from usertext.controls import strip_controls

CUSTOM_ID_PREFIX = "peel"
MAX_CUSTOM_ID = CUSTOM_ID
# A link button's url (https://discord.com/developers/docs/components/reference#button): a longer one makes Discord
# refuse the whole message with 400/50035.
MAX_LINK_URL = LINK_URL
_ID_PART = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class CustomId:
    """A persistent button's id, `peel:<action>:<job>:<index>`; resolved from the ledger on click."""

    action: str
    job_id: str
    index: int = 0

    def encode(self) -> str:
        """Return the custom id string (≤ 100 characters, Discord's limit)."""
        for part in (self.action, self.job_id):
            if not _ID_PART.match(part):
                raise ValueError(f"custom id part {part!r} has characters outside [A-Za-z0-9_.-]")
        value = f"{CUSTOM_ID_PREFIX}:{self.action}:{self.job_id}:{self.index}"
        if len(value) > MAX_CUSTOM_ID:
            raise ValueError(f"custom id {value!r} is longer than {MAX_CUSTOM_ID} characters")
        return value

    @classmethod
    def decode(cls, value: str) -> "CustomId | None":
        """Parse a custom id made by `encode`; None for anything else."""
        parts = value.split(":")
        if len(parts) != 4 or parts[0] != CUSTOM_ID_PREFIX or not parts[3].isdigit():
            return None
        if not (_ID_PART.match(parts[1]) and _ID_PART.match(parts[2])):
            return None
        return cls(action=parts[1], job_id=parts[2], index=int(parts[3]))


def truncate(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """Return `text` cut to at most `limit` characters, marking the cut; never inside a link, mention or escape."""
    return fit_text(text, limit, ellipsis=ellipsis)


def code(text: str, *, limit: int = 80) -> str:
    """Return user text as an inline code span that shows it as typed, for errors that quote the input.

    A backtick would close the span early and let what follows render as markdown (a masked link included), so
    backticks become apostrophes; controls and line breaks go, and long text is cut.
    """
    shown = one_line(text).replace("`", "'")
    return f"`{truncate(shown, limit) or ' '}`"


# Markdown that works anywhere in a line: emphasis, code, spoilers, and `[text](url)` masked links (escaping the
# brackets is enough to show them as typed), `<…>` for links, channels, emoji and timestamps.
_INLINE_MARKDOWN = re.compile(r"([\\*_~`|\[\]<])")
# Markdown that only works at the start of a line: headings, `-#` subtext, quotes, lists. Discord hides a
# backslash before any ASCII punctuation, so escaping shows the text as typed.
_LINE_START_MARKDOWN = re.compile(r"^(\s*)([#>+-])", re.MULTILINE)
# `@everyone`, `@here`, `<@id>`, `<@!id>` and `<@&role>`: a zero-width space after the `@` shows the text as typed
# and mentions nobody, as `discord.utils.escape_mentions` does.
_MENTION = re.compile(r"@(everyone|here|[!&]?[0-9])")


def escape_markdown(text: str, *, mid_line: bool = False) -> str:
    """Escape Discord markdown so a prompt shows as typed (and cannot break the bold around it).

    `mid_line`: the text goes after something on its line (`• **name**`), where a heading or quote cannot start,
    so its first character is left alone (a client showing escapes as typed would show a backslash before `#`).
    """
    inline = _INLINE_MARKDOWN.sub(r"\\\1", text)
    return inline if mid_line else _LINE_START_MARKDOWN.sub(r"\1\\\2", inline)


def echo(text: str, *, mid_line: bool = False) -> str:
    """Return user text (a prompt, a file or group name) made safe to show inside one of Peel's messages.

    Bidirectional controls are dropped and other control characters (line breaks too, so the text stays on its
    line) become spaces; markdown and masked links are escaped and mentions are broken up. Messages are also sent
    with no allowed mentions, so a mention could not ping anyway; breaking it up keeps it from looking like one.
    Pure, unlike `discord.utils`: core renders whole lines that mix user text with Peel's own markdown.
    `mid_line` as for `escape_markdown`.
    """
    return _MENTION.sub("@\u200b\\1", escape_markdown(strip_controls(text, replacement=" "), mid_line=mid_line))


def one_line(text: str) -> str:
    """Return user text for a place that shows it as typed (a thread name, a select label): one line, no controls."""
    return " ".join(strip_controls(text, replacement=" ").split())


def format_duration(seconds: float) -> str:
    """Return a short human duration: `45s`, `3m 05s`, `2h 10m`."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days} days" if hours == 0 else f"{days}d {hours:02d}h"


def link_lifetime(expires_s: float | None) -> str:
    """Say how long a ZIP link works: until it expires, or (a stable link, `expires_s` None) while the ZIP is kept."""
    if expires_s is None:
        return "the link works as long as the ZIP is kept"
    return f"the link expires in {format_duration(expires_s)}"


def download_line(url: str, *, what: str, expires_s: float | None) -> str:
    """Return a line with a masked download link: `📦 [Download the ZIP](url) — what; <link_lifetime>`."""
    return f"📦 [Download the ZIP](<{url}>) — {what}; {link_lifetime(expires_s)}"


def fresh_zip_line(url: str, *, expires_s: float | None) -> str:
    """Return the answer to "New link": the ZIP's link and how long it works (`link_lifetime`)."""
    return f"📦 A fresh link to the ZIP ({link_lifetime(expires_s)}): {url}"


def lifecycle_line(prompt: str, user_mention: str, state: str, *, limit: int = MAX_CONTENT) -> str:
    """Return Midjourney's message line: `**prompt** - @user (state)`, the prompt cut to fit Discord's limit."""
    suffix = f"** - {user_mention} ({state})"
    room = limit - len(suffix) - 2
    return f"**{truncate(echo(prompt, mid_line=True), room)}{suffix}"


def waiting_state(position: int | None) -> str:
    """Return the state shown while a job waits: its queue position when known."""
    if position is None or position <= 0:
        return "Waiting to start"
    return f"Waiting to start · #{position} in queue"


def discord_time(moment: datetime) -> str:
    """Return a Discord timestamp (`<t:UNIX:t>`): each reader sees the time of day in their own time zone."""
    return f"<t:{int(moment.timestamp())}:t>"


# What holds a job, per service, as users read it: RunPod is "the image workers" to them; Gemini is known by name,
# and the bot only sees that it does not answer the workers (down, or a network between them).
DELAYED_BY = {"runpod": "image workers unreachable", "gemini": "Gemini not answering"}
BACK_WHEN = {"runpod": "they are back", "gemini": "it answers"}


def delayed_state(since: str, service: str = "runpod") -> str:
    """Return the state of a job held by an outage of `service`; `since` is the time as the front end shows it."""
    return f"delayed: {DELAYED_BY.get(service, f'{service_name(service)} unreachable')} since {since}"


def delayed_line(since: str, service: str = "runpod") -> str:
    """Return the line a batch's progress message adds while an outage of `service` holds it."""
    return f"⚠️ {delayed_state(since, service)}; Peel carries on by itself when {BACK_WHEN.get(service, 'it is back')}"


SERVICE_NAMES = {"runpod": "RunPod", "gemini": "Gemini"}
# What admins can check while a service is down (Peel resumes by itself; these are the causes Peel can have).
DOWN_HINTS = {
    "gemini": " If it lasts, check GEMINI_BASE_URL on the RunPod endpoint and that its workers reach Gemini.",
}


def service_name(service: str) -> str:
    """Return a service's name as operators know it."""
    return SERVICE_NAMES.get(service, service)


def service_down_text(service: str, since: str, reason: str) -> str:
    """Return the admins' alert that a service stopped answering (once per outage)."""
    return (
        f"⚠️ {service_name(service)} unreachable since {since} ({truncate(one_line(reason), 300)}). Waiting jobs"
        f" are delayed; Peel probes it and resumes by itself.{DOWN_HINTS.get(service, '')}"
    )


def service_restored_text(service: str, down_for: timedelta) -> str:
    """Return the admins' note that a service answers again."""
    return f"✅ {service_name(service)} is back after {format_duration(down_for.total_seconds())}."


def config_error_text(service: str, detail: str, fix: str) -> str:
    """Return the admins' alert that a service refused Peel's configuration, with the fix."""
    return (
        f"⛔ {service_name(service)} refused Peel's configuration: {truncate(one_line(detail), 300)}. Fix: {fix}."
        " Jobs fail with a clear message until it is fixed; no restart is needed."
    )


def generating_state(done: int, total: int, elapsed_s: float, expected_s: float | None = None) -> str:
    """Return the state shown while a job runs: images ready so far, the time taken and the time it should take.

    `expected_s` is the usual time for the job's model and size (`bot.core.eta.CallTimes`); past it the line says
    so rather than counting down below zero. `generating… 2/4 ready · 5s of about 12s`.
    """
    part = f"{done}/{total} ready · " if total > 1 else ""
    elapsed = format_duration(elapsed_s)
    if expected_s is None:
        return f"generating… {part}{elapsed}"
    usual = format_duration(max(1.0, expected_s))
    if elapsed_s > expected_s:
        return f"generating… {part}{elapsed}, longer than the usual {usual}"
    return f"generating… {part}{elapsed} of about {usual}"


def progress_bar(done: int, total: int, *, width: int = 20) -> str:
    """Return a text progress bar with its percentage: `▓▓▓▓░░░░ 50%`."""
    if total <= 0:
        return "░" * width + " 0%"
    share = min(1.0, max(0.0, done / total))
    filled = round(share * width)
    return "▓" * filled + "░" * (width - filled) + f" {int(share * 100)}%"


def eta_s(*, remaining: int, rate_per_s: float) -> float | None:
    """Return the seconds left at the current rate, or None when there is no rate yet."""
    if remaining <= 0:
        return 0.0
    if rate_per_s <= 0:
        return None
    return remaining / rate_per_s


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchProgress:
    """A batch's counts at one moment, as its progress message shows them."""

    total: int
    done: int
    failed: int
    blocked: int
    elapsed_s: float
    cost_usd: float
    state: str = "running"
    retrying: int = 0  # items whose last attempt failed and that are tried again
    retry_code: str | None = None  # why most of them failed (an `ErrorCode` value)
    delayed_since: str | None = None  # when an outage began, as the front end shows times
    delayed_service: str = "runpod"  # which service's outage (`DELAYED_BY`)
    cancelled: int = 0  # items a cancel left unmade: they count in `total` but are neither finished nor remaining
    relax: bool = False  # a relax batch: Gemini's Batch API makes its images, at its own pace (no images/min ETA)
    relax_status: RelaxStatus | None = None  # its parts still open (None: fast, or no part open now)
    relax_waiting_s: float | None = None  # how long Gemini has held the oldest open part
    relax_trouble_s: float | None = None  # how long Gemini's Batch API has not answered (None: it answers)
    budget_line: str | None = None  # why a paused batch waits: the money cap it reached (`budget_paused_line`)

    @property
    def finished(self) -> int:
        """Items that need nothing more (made, failed for good or blocked)."""
        return self.done + self.failed + self.blocked

    @property
    def remaining(self) -> int:
        """Items still to make."""
        return max(0, self.total - self.finished - self.cancelled)

    @property
    def rate_per_min(self) -> float:
        """Images made per minute so far."""
        return self.done / self.elapsed_s * 60 if self.elapsed_s > 0 else 0.0


ENDED_STATES = frozenset(status.value for status in JobStatus if status.is_final)
# A paused batch whose chunks are still out: the calls in flight finish, nothing new starts (then "paused").
PAUSING = "pausing…"


TRIAL_HELD = "trial done · waiting for Start the rest"


def batch_state(status: JobStatus, *, chunks_out: int, trial_held: bool = False) -> str:
    """Return the state a batch's messages show: its status, or what a pause is waiting for.

    `PAUSING` while a pause waits for its chunks; `TRIAL_HELD` once a "Try on N" has made its N and the rest waits
    for the owner's Start the rest.
    """
    if status is JobStatus.PAUSED and chunks_out > 0:
        return PAUSING
    return TRIAL_HELD if status is JobStatus.PAUSED and trial_held else status.value


# Why items are being retried, as a user reads it; the codes are `worker.contract.ErrorCode` values.
RETRY_REASONS = {
    "UPSTREAM": "Gemini is not answering",
    "RATE_LIMITED": "Gemini asks us to slow down",
    "NO_IMAGE": "Gemini answered without an image",
    "STORAGE": "The image store is not answering",
}


def retrying_line(retrying: int, code: str | None) -> str:
    """Return the line that says items are being retried, and why: `🔁 12 retrying · Gemini is not answering; …`."""
    reason = RETRY_REASONS.get(code or "", "their last attempt failed")
    return f"🔁 {retrying} retrying · {reason}; Peel tries again by itself"


# Gemini's Batch API targets 24 hours and is usually much quicker (https://ai.google.dev/gemini-api/docs/batch-mode):
# no rate of Peel's own predicts it, so a relax batch shows this instead of an ETA.
RELAX_ETA = "Gemini's batch, usually within hours, at most 24 h"


def relax_trouble_line(trouble_s: float) -> str:
    """Return the line that says Gemini's Batch API has not answered Peel for a while (the batches run on)."""
    return (
        f"⚠️ Gemini's Batch API has not answered Peel for {format_duration(trouble_s)}; Peel keeps asking "
        "(the batch itself runs on at Gemini)"
    )


def relax_line(status: RelaxStatus | None, *, waiting_s: float | None = None) -> str:
    """Return what a relax batch's progress says of Gemini: `🐢 relax · Gemini running: 640/1,000 done · …`.

    `status` None: no part is open (its items wait to be sent, or all were collected).
    """
    if status is None:
        return "🐢 relax · Gemini's Batch API, half price"
    waited = "" if waiting_s is None else f" · waiting {format_duration(waiting_s)}"
    if status.phase is RelaxPhase.PREPARING:
        return f"🐢 relax · preparing {status.sent:,} requests for Gemini"
    if status.phase is RelaxPhase.SUBMITTED:
        return f"🐢 relax · {status.sent:,} sent, waiting for Gemini to start{waited}"
    if status.phase is RelaxPhase.RUNNING:
        return (
            f"🐢 relax · Gemini running: {status.gemini_done:,}/{status.sent:,} done · "
            f"{status.gemini_failed:,} failed{waited}"
        )
    return f"🐢 relax · collecting results ({status.gemini_done:,} made by Gemini)"


def relax_paused_text(held: int) -> str:
    """Return what a pause of a relax batch does: Gemini's Batch API has cancel but no pause (the docs list none)."""
    if held <= 0:
        return "Paused: nothing new is sent to Gemini. Resume sends exactly the rest."
    return (
        f"Paused: nothing new is sent; the {held:,} images Gemini already holds will still be made and collected "
        "(Gemini cannot pause a batch). Resume sends exactly the rest."
    )


def budget_paused_line(refused: Refused, tz: ZoneInfo) -> str:
    """Return what a batch paused at a money cap says: which cap, what counts against it, and when it resets."""
    whose = {ScopeKind.USER: "your", ScopeKind.ROLE: "your role's", ScopeKind.GUILD: "this server's"}[refused.scope]
    when = "daily" if refused.period is Period.DAY else "monthly"
    resets = refused.resets_at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"⛔ Paused at {whose} {when} budget of {usd_text(refused.cap)}: {usd_text(refused.spent)} is spent or "
        f"reserved. It resets at {resets}; press Resume then, or ask an admin to raise it."
    )


def batch_progress_text(p: BatchProgress) -> str:
    """Return the body of a batch's one progress message."""
    if p.state in ENDED_STATES:  # nothing is coming: how long it took and what it cost
        pace = f"⚡ {p.rate_per_min:.1f} images/min · ⏱️ took {format_duration(p.elapsed_s)} · 💵 ${p.cost_usd:.2f}"
        if p.relax:
            pace = f"🐢 relax · ⏱️ took {format_duration(p.elapsed_s)} · 💵 ${p.cost_usd:.2f} at the batch price"
    elif p.relax:
        eta_text = RELAX_ETA if p.state == "running" else p.state
        pace = f"ETA: {eta_text} · 💵 ${p.cost_usd:.2f} so far (batch price)"
    else:
        eta_text = p.state  # paused, queued, waiting: no ETA while nothing is made
        if p.state == "running":
            eta = eta_s(remaining=p.remaining, rate_per_s=p.rate_per_min / 60)
            eta_text = "—" if eta is None else format_duration(eta)
        pace = f"⚡ {p.rate_per_min:.1f} images/min · ETA {eta_text} · 💵 ${p.cost_usd:.2f} so far"
    lines = [
        f"`{progress_bar(p.finished, p.total)}`",
        f"✅ {p.done} done · ❌ {p.failed} failed · 🚫 {p.blocked} blocked · "
        + (f"⏹️ {p.cancelled} not made (cancelled)" if p.cancelled else f"⏳ {p.remaining} remaining"),
        pace,
    ]
    if p.relax and p.state not in ENDED_STATES:
        lines.append(relax_line(p.relax_status, waiting_s=p.relax_waiting_s))
        if p.relax_trouble_s is not None:
            lines.append(relax_trouble_line(p.relax_trouble_s))
        if p.state == JobStatus.PAUSED.value and p.relax_status is not None:
            lines.append(relax_paused_text(p.relax_status.sent))
    if p.budget_line is not None and p.state not in ENDED_STATES:
        lines.append(p.budget_line)
    if p.retrying and p.state not in ENDED_STATES:
        lines.append(retrying_line(p.retrying, p.retry_code))
    if p.delayed_since is not None and p.state not in ENDED_STATES:
        lines.append(delayed_line(p.delayed_since, p.delayed_service))
    return "\n".join(lines)


def image_line(prompt: str, index: int, user_mention: str, *, limit: int = MAX_CONTENT) -> str:
    """Return Midjourney's line above a separated image: `**prompt** - Image #2 @user`."""
    suffix = f"** - Image #{index} {user_mention}"
    room = limit - len(suffix) - 2
    return f"**{truncate(echo(prompt, mid_line=True), room)}{suffix}"


def full_size_link(link: str) -> str | None:
    """Return the link for a "Full size" link button, or None when Discord would refuse it as too long."""
    return fit_link_url(link)


def with_full_size_line(content: str, link: str, *, limit: int = MAX_CONTENT) -> str:
    """Return `content` with the full-size link on a line of its own when it fits the message, else `content`.

    For a link too long for a button (a presigned store URL can be ~1,000 characters); `<...>` keeps Discord
    from unfurling it into an embed.
    """
    line = f"\nFull size: <{link}>"
    return content + line if len(content) + len(line) <= limit else content


def with_notes(content: str, lines: Sequence[str]) -> str:
    """Return a job's message with the lines of `job_note_lines` under it."""
    return "\n".join([content, *lines])


def references_line(names: Sequence[str]) -> str:
    """Return the line naming a job's reference images: `📎 with 2 references: cat.png, style.jpg`."""
    shown = ", ".join(truncate(echo(name, mid_line=True), 40) for name in names)
    return f"📎 with {len(names)} reference{'s' if len(names) != 1 else ''}: {shown}"


def job_note_lines(notes: Sequence[str], references: Sequence[str]) -> tuple[str, ...]:
    """Return the lines under a job's line: which references it used, then its notes (`ℹ️ Ignored …`)."""
    lines = [references_line(references)] if references else []
    return (*lines, *(f"ℹ️ {note}" for note in notes))


def edit_display(prompt: str, instruction: str) -> str:
    """Return what an edit's message shows as its prompt: the edited image's prompt, then the instruction."""
    return f"{prompt} ✏️ {instruction}"


def images_line(made: int, not_made: int) -> str:
    """Return `/info`'s images: how many were made and, when some were not, that Spend counts what they cost.

    A blocked or failed image is not billed as an image, but Gemini bills the input tokens of any answer it gave
    (`bot.core.item_errors`), so "not charged" would be untrue; the Spend field holds what was recorded.
    """
    line = f"{made:,} made"
    if not_made:
        line += f" · {not_made:,} not made (blocked or failed; Spend includes what Gemini billed for them)"
    return line


def blocked_title(reason: str) -> str:
    """Return the title of a blocked job's message: the code's one sentence (`Blocked by Gemini's safety filters`).

    Said once: Gemini's own wording ("Gemini blocked the prompt: PROHIBITED_CONTENT") is the operator's detail.
    """
    return reason.rstrip(".")


def result_who(label: str, user_mention: str) -> str:
    """Return who made a result and how, as Midjourney words it: `Variations (Strong) by @user`, or just `@user`."""
    return f"{label} by {user_mention}" if label else user_mention


@dataclass(slots=True)
class EditPacer:
    """Decides when a message may be edited again: at most once per `interval_s`, except for final states.

    Pure: the caller passes the monotonic time; Discord rate-limits edits (5 per 5 s per channel), and many
    jobs share a channel, so progress edits are spaced and coalesced.
    """

    interval_s: float = 3.0
    last_edit_s: float | None = None

    def due(self, now_s: float, *, final: bool = False) -> bool:
        """Tell whether an edit may go out now."""
        return final or self.last_edit_s is None or now_s - self.last_edit_s >= self.interval_s

    def edited(self, now_s: float) -> None:
        """Record that an edit went out at `now_s`."""
        self.last_edit_s = now_s


@dataclass(slots=True)
class WindowLimiter:
    """At most `limit` actions per sliding `window_s` (one channel's edits); `wait_s` says how long to hold off."""

    limit: int = 4
    window_s: float = 5.0
    sent: list[float] = field(default_factory=list)

    def wait_s(self, now_s: float) -> float:
        """Return how long to wait before the next action may go out (0 when it may go now)."""
        self.sent = [t for t in self.sent if now_s - t < self.window_s]
        if len(self.sent) < self.limit:
            return 0.0
        return self.window_s - (now_s - self.sent[0])

    def record(self, now_s: float) -> None:
        """Record an action at `now_s`."""
        self.sent.append(now_s)


def many_grids_text(*, grids: int, images: int, cost_usd: float | None) -> str:
    """Return what `/imagine` asks before queuing the grids of a permutation or `--repeat` prompt."""
    cost = "price unknown" if cost_usd is None else f"about ${cost_usd:.2f}"
    return f"This makes {grids} grids ({images} images), {cost}. Queue them all?"
