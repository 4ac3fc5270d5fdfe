"""Batch decisions without I/O: the limits a new batch must fit, its estimates, and what its messages say.

Pure: `bot.app.batches` gathers the numbers (the ledger's unfinished jobs, the intake report, the price table) and the
Discord layer shows the strings.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.core.render import (
    BatchProgress,
    batch_progress_text,
    code,
    download_line,
    echo,
    format_duration,
    one_line,
    truncate,
)

MAX_THREAD_NAME = 100
SKIPPED_NAMED = 5  # how many skipped entries the plan names; the manifest lists them all
DEFAULT_IMAGE_SIZE = "1K"

SKIP_LABELS: Mapping[str, str] = {
    "unsafe_path": "unsafe path",
    "symlink": "symbolic link",
    "not_regular_file": "not a regular file",
    "encrypted": "encrypted",
    "unsupported_compression": "unsupported compression",
    "nested_archive": "archive inside the archive",
    "too_large": "too large",
    "suspicious_ratio": "suspicious compression ratio",
    "corrupt_entry": "corrupt entry",
    "not_an_image": "not an image",
    "corrupt_image": "corrupt image",
    "too_many_pixels": "too many pixels",
    "duplicate": "duplicate",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLimits:
    """Caps on batches (`BotSettings.batch_*`); admins are exempt from the per-user ones."""

    max_items: int
    max_running_per_user: int
    max_running_per_guild: int
    max_items_per_guild: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLoad:
    """What is already running when a batch asks to start: unfinished batches of its owner and of its guild."""

    user_running: int
    guild_running: int
    guild_items: int  # items of the guild's unfinished batches that are not finished yet


def _n(value: int) -> str:
    return f"{value:,}"


def limit_refusal(limits: BatchLimits, load: BatchLoad, *, items: int, is_admin: bool = False) -> str | None:
    """Return why a batch of `items` images may not start now (naming the limit and by how much), or None."""
    if not is_admin and items > limits.max_items:
        return (
            f"This batch has {_n(items)} images; the limit is {_n(limits.max_items)} per batch "
            f"({_n(items - limits.max_items)} too many). Split the ZIP and run the parts one after another."
        )
    if not is_admin and load.user_running >= limits.max_running_per_user:
        return (
            f"You already have {load.user_running} batches running; the limit is {limits.max_running_per_user} "
            f"at once. Wait for one to finish, or cancel one."
        )
    if load.guild_running >= limits.max_running_per_guild:
        return (
            f"This server already has {load.guild_running} batches running; the limit is "
            f"{limits.max_running_per_guild} at once. Try again when one has finished."
        )
    if load.guild_items + items > limits.max_items_per_guild:
        over = load.guild_items + items - limits.max_items_per_guild
        return (
            f"This server's running batches still have {_n(load.guild_items)} images to make; this batch would add "
            f"{_n(items)}, {_n(over)} over the server's limit of {_n(limits.max_items_per_guild)}. "
            f"Try again later, or with a smaller ZIP."
        )
    return None


class Speed(StrEnum):
    """How a batch runs: `fast` (RunPod chunks calling Gemini directly) or `relax` (Gemini's Batch API, half price)."""

    FAST = "fast"
    RELAX = "relax"


def default_speed(guild_id: int | None, *, default: Speed, relax_guilds: Collection[int]) -> Speed:
    """Return the speed a `/batch` runs at when its owner chose none: relax in `relax_guilds`, else `default`."""
    return Speed.RELAX if guild_id is not None and guild_id in relax_guilds else default


# Gemini's Batch API "is designed to process large volumes of requests asynchronously ... at 50% of the standard
# cost. The target turnaround time is 24 hours, but in majority of cases, it is much quicker."
# (https://ai.google.dev/gemini-api/docs/batch-mode)
RELAX_WAIT = "usually within a few hours, at most 24 h (Gemini's target)"
RELAX_OFFER_MIN_ITEMS = 100  # a fast plan this large mentions what relax would cost: below it the saving is cents


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchEstimate:
    """What a batch is expected to cost and take before it starts.

    `relax` says the batch runs through Gemini's Batch API (`unit_price_usd` is then the batch price);
    `other_unit_price_usd` is the mean price of one image in the other mode, so the plan can show both.
    """

    items: int
    unit_price_usd: float | None
    duration_s: float
    relax: bool = False
    other_unit_price_usd: float | None = None

    @property
    def cost_usd(self) -> float | None:
        """The whole batch's expected price (every image made), or None when the price is unknown."""
        return None if self.unit_price_usd is None else self.unit_price_usd * self.items

    @property
    def other_cost_usd(self) -> float | None:
        """What the whole batch would cost in the other mode, or None when unknown."""
        return None if self.other_unit_price_usd is None else self.other_unit_price_usd * self.items


def estimate_batch(
    *,
    items: int,
    unit_price_usd: float | None,
    latency_s: float,
    concurrency: int,
    relax: bool = False,
    other_unit_price_usd: float | None = None,
) -> BatchEstimate:
    """Estimate a batch: `items` images at `concurrency` calls in flight, each `latency_s` long.

    The duration is fast mode's; a relax batch's wait is Gemini's (`RELAX_WAIT`), which the plan says instead.
    """
    duration = items * latency_s / max(1, concurrency)
    return BatchEstimate(
        items=items,
        unit_price_usd=unit_price_usd,
        duration_s=duration,
        relax=relax,
        other_unit_price_usd=other_unit_price_usd,
    )


def thread_name(prompt: str, *, items: int) -> str:
    """Return the name of a batch's thread (its group): the prompt, cut to fit, and the image count."""
    suffix = f" · {items} images"
    return truncate(one_line(prompt) or "batch", MAX_THREAD_NAME - len(suffix)) + suffix


def skipped_lines(skipped: Mapping[str, int]) -> list[str]:
    """Return one line per skip reason, most frequent first: `• 3 not an image`."""
    ordered = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    return [f"• {count} {skip_label(reason)}" for reason, count in ordered if count]


def skip_label(reason: str) -> str:
    """Return what a skip reason code says to users: `not_an_image` → `not an image` (unknown codes read as words)."""
    return SKIP_LABELS.get(reason, reason.replace("_", " "))


def options_line(
    *, model: str, aspect_ratio: str | None, image_size: str | None, seed: int | None, markdown: bool = True
) -> str:
    """Return the options a batch runs with: `⚙️ Model `m` · aspect ratio 16:9 · size 2K · seed 7`.

    Unset, Gemini picks the aspect ratio from the reference images and makes 1K images (Gemini API reference,
    `ImageConfig`: "If not specified, the model will choose a default aspect ratio based on any reference images
    provided"; image size "If not specified, the model will use default value 1K"). The seed shows only when fixed.
    """
    parts = [
        f"⚙️ Model `{model}`" if markdown else f"⚙️ Model {model}",
        f"aspect ratio {aspect_ratio or 'auto (follows each input)'}",
        f"size {image_size or DEFAULT_IMAGE_SIZE}",
    ]
    if seed is not None:
        parts.append(f"seed {seed}")
    return " · ".join(parts)


def _entry_name(name: str, *, markdown: bool) -> str:
    return code(name, limit=60) if markdown else truncate(one_line(name), 60)


def skipped_entry_lines(
    entries: Sequence[tuple[str, str]], *, shown: int = SKIPPED_NAMED, markdown: bool = True
) -> list[str]:
    """Return the first `shown` skipped entries by name with their reason, under a line saying the manifest has all.

    The names are the uploader's: in a message each is an inline code span (`code`: no markdown, link or mention
    can come out of it); on a terminal it is one line without controls.
    """
    if not entries:
        return []
    head = (
        f"First {shown} skipped (all {len(entries):,} are in the manifest):"
        if len(entries) > shown
        else "Skipped (also in the manifest):"
    )
    return [head] + [
        f"• {_entry_name(name, markdown=markdown)}: {skip_label(reason)}" for name, reason in entries[:shown]
    ]


def plan_text(
    *,
    prompt: str,
    model: str,
    image_size: str | None,
    accepted: int,
    skipped: Mapping[str, int],
    estimate: BatchEstimate,
    notes: tuple[str, ...] = (),
    aspect_ratio: str | None = None,
    seed: int | None = None,
    prompt_source: str = "one prompt",
    skipped_entries: Sequence[tuple[str, str]] = (),
    problems: Sequence[str] = (),
    references: Sequence[str] = (),
    markdown: bool = True,
    budget: str | None = None,
) -> str:
    """Return the ephemeral summary shown before Start: what will run and how, what was skipped, cost and time.

    Args:
        prompt: the prompt as the user typed it.
        model: the model the batch runs on.
        image_size: the size chosen (None: Gemini's default).
        accepted: how many images (items) Start would queue.
        skipped: skipped entries by reason code.
        estimate: the cost and time of the accepted items.
        notes: what the prompt's parser noted.
        aspect_ratio: the aspect ratio chosen (None: Gemini follows each input).
        seed: the seed base, when the user fixed one.
        prompt_source: where the prompts come from (one prompt, a prompt list, captions).
        skipped_entries: the skipped entries as (name, reason code), in ZIP order; the first few are named.
        problems: the first few prompt rows that give no item, as `where: what is wrong` (user text: shown escaped).
        references: the names of the shared reference images sent with every item. Peel's price table prices the
            image made, not the images sent: Gemini bills those as input tokens
            (https://ai.google.dev/gemini-api/docs/pricing), so the estimate leaves them out and says so.
        markdown: False for a terminal (`python -m bot batch`): user text shown as typed on one line, no markup,
            and no Start to press.
        budget: the cost against what the owner's tightest money cap leaves (`bot.core.budget_text`), if one
            applies.
    """
    shown = echo if markdown else one_line
    bold = "**" if markdown else ""
    lines = [
        f"{bold}Batch ready:{bold} {truncate(shown(prompt), 300)}",
        f"📝 Prompts: {truncate(shown(prompt_source), 200)}",
        options_line(model=model, aspect_ratio=aspect_ratio, image_size=image_size, seed=seed, markdown=markdown),
        f"🖼️ {bold}{accepted:,}{bold} images accepted · ⏭️ {sum(skipped.values()):,} skipped",
    ]
    if references:
        names = ", ".join(shown(name) for name in references)
        lines.append(
            f"🖼️ {len(references)} shared reference(s) for every image: {truncate(names, 300)} "
            "(billed by Gemini as input tokens, not included in the cost)"
        )
    lines += skipped_lines(skipped)
    lines += skipped_entry_lines(skipped_entries, markdown=markdown)
    lines += [f"⚠️ {truncate(shown(problem), 300)}" for problem in problems]
    lines += cost_lines(estimate, markdown=markdown)
    lines += [budget] if budget else []
    lines += [f"Note: {shown(note)}" for note in notes]
    if markdown:
        lines.append("Nothing is queued until you press **Start**.")
    return "\n".join(lines)


def cost_lines(estimate: BatchEstimate, *, markdown: bool = True) -> list[str]:
    """Return the plan's cost and time: in relax, both prices and Gemini's wait; a large fast plan offers relax."""
    cost, other = estimate.cost_usd, estimate.other_cost_usd
    cost_text = "unknown (no price for this model and size)" if cost is None else f"about ${cost:,.2f}"
    if estimate.relax:
        fast = "" if other is None else f" (fast would be ${other:,.2f})"
        return [f"💵 🐢 Relax: {cost_text} for {estimate.items:,} images{fast} · ⏱️ {RELAX_WAIT}"]
    lines = [
        f"💵 Estimated cost {cost_text} for {estimate.items:,} images · ⏱️ about {format_duration(estimate.duration_s)}"
    ]
    if other is not None and estimate.items >= RELAX_OFFER_MIN_ITEMS:
        how = "`speed:relax`" if markdown else "--relax"
        lines.append(f"🐢 Relax ({how}) would cost about ${other:,.2f}, {RELAX_WAIT}")
    return lines


def progress_message(*, prompt: str, owner_mention: str, progress: BatchProgress) -> str:
    """Return the batch's one progress message: a header line and `batch_progress_text`."""
    header = f"**{truncate(echo(prompt), 200)}** - {owner_mention} ({progress.state})"
    return header + "\n" + batch_progress_text(progress)


def summary_message(
    *,
    prompt: str,
    owner_mention: str,
    state: str,
    ok: int,
    failed: int,
    blocked: int,
    cancelled: int,
    skipped: int,
    cost_usd: float,
    errors: Mapping[str, int],
    link: str | None,
    expires_s: int | None,
    relax: bool = False,
) -> str:
    """Return the message posted when a batch ends: counts, reasons, cost (in relax: at the batch price), the ZIP.

    `expires_s` is how long `link` works; None for a stable link, which works as long as the ZIP is kept.
    """
    mode = " · 🐢 relax, at Gemini's batch price (half)" if relax else " · ⚡ fast"
    lines = [
        f"**{truncate(echo(prompt), 200)}** - {owner_mention} ({state})",
        f"✅ {ok:,} made · ❌ {failed:,} failed · 🚫 {blocked:,} blocked · ⏹️ {cancelled:,} cancelled"
        f" · ⏭️ {skipped:,} skipped in the ZIP · 💵 ${cost_usd:.2f}{mode}",
    ]
    if errors:
        lines.append("Failures: " + ", ".join(f"{code}: {n}" for code, n in sorted(errors.items())))
    if link is not None:
        lines.append(download_line(link, what="images, manifest.csv and manifest.json", expires_s=expires_s))
    return "\n".join(lines)
