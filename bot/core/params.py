"""Midjourney-style inline parameters in a prompt: `a fox --ar 16:9 --seed 7 --no trees --model pro --size 2K --n 4`.

`--repeat N` runs the prompt N times (1 to `MAX_REPEAT`), as Midjourney's `--repeat` does; with `--seed S` the runs
take seeds S, S+1, … (`repeat_seeds`), without it each its own random seed.

Midjourney's own parameters that Gemini has no equivalent for (`--v 6`, `--stylize 250`, `--tile`, …,
`MIDJOURNEY_IGNORED`) are removed with their values and named in one note (`ignored_note`), so a prompt pasted from
Midjourney runs. A name that is neither Peel's nor Midjourney's (`--sed 5`) is still an error: it is most likely a
typo of one of Peel's, and running without it would silently drop what the user asked for.

Pure: the Discord layer, `/batch` and the CLI parse prompts with `parse_prompt`; every problem is collected and
reported together, naming the parameter, so a user can fix them all at once.
"""

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from math import log

from bot.core.render import code, echo
from worker.contract import ASPECT_RATIOS_10, IMAGE_SIZES, MAX_SEED, MODEL_ALIASES

# The model catalogue (`worker.contract`) is the one source of ratios, sizes, seeds and model names.
GEMINI_ASPECT_RATIOS: tuple[str, ...] = ASPECT_RATIOS_10
GRID_SIZES: tuple[int, ...] = (1, 2, 4)
MAX_REPEAT = 40  # Midjourney allows 40 on its top plans ("Repeat" parameter); the front ends cap totals on their own

_MODEL_NAME = re.compile(r"^(models/)?gemini-[a-z0-9.-]+$")
_PARAM = re.compile(r"(?:^|\s)(--|—)([A-Za-z][A-Za-z0-9_-]*)")
_RATIO = re.compile(r"^\s*(\d{1,4})\s*[:x/]\s*(\d{1,4})\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptParams:
    """What a prompt asks for besides its text; None means "the user's or the bot's default"."""

    model: str | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    seed: int | None = None
    grid_size: int | None = None
    negative: tuple[str, ...] = ()
    repeat: int | None = None

    def merged_over(self, defaults: "PromptParams") -> "PromptParams":
        """Return these parameters with every unset one taken from `defaults`."""
        return PromptParams(
            model=self.model or defaults.model,
            aspect_ratio=self.aspect_ratio or defaults.aspect_ratio,
            image_size=self.image_size or defaults.image_size,
            seed=self.seed if self.seed is not None else defaults.seed,
            grid_size=self.grid_size or defaults.grid_size,
            negative=self.negative or defaults.negative,
            repeat=self.repeat or defaults.repeat,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedPrompt:
    """A prompt split into its text and parameters, with notes to show the user (e.g. a snapped ratio)."""

    text: str
    params: PromptParams
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Tell whether the prompt parsed without errors."""
        return not self.errors

    def model_prompt(self) -> str:
        """Return the text sent to the model, with `--no` words rewritten into it."""
        if not self.params.negative:
            return self.text
        return f"{self.text}. Do not include: {', '.join(self.params.negative)}."

    def display(self) -> str:
        """Return the prompt as Peel shows it back: the text, then the parameters that were given."""
        parts = [self.text]
        p = self.params
        if p.aspect_ratio:
            parts.append(f"--ar {p.aspect_ratio}")
        if p.model:
            parts.append(f"--model {p.model}")
        if p.image_size:
            parts.append(f"--size {p.image_size}")
        if p.seed is not None:
            parts.append(f"--seed {p.seed}")
        if p.grid_size:
            parts.append(f"--n {p.grid_size}")
        if p.negative:
            parts.append(f"--no {', '.join(p.negative)}")
        if p.repeat:
            parts.append(f"--repeat {p.repeat}")
        return " ".join(parts)


@dataclass(slots=True)
class _Builder:
    params: PromptParams = field(default_factory=PromptParams)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def snap_aspect_ratio(width: int, height: int, allowed: Sequence[str] = GEMINI_ASPECT_RATIOS) -> str:
    """Return the allowed ratio nearest to `width:height` (compared on a log scale, so 2:1 and 1:2 are symmetric)."""
    target = log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(x) for x in ratio.split(":"))
        return abs(log(w / h) - target)

    return min(allowed, key=distance)


def resolve_model(name: str) -> str | None:
    """Return the full model id for an alias (`flash`, `pro`) or a full Gemini model name, or None if neither."""
    lowered = name.strip().lower()
    if lowered in MODEL_ALIASES:
        return MODEL_ALIASES[lowered]
    if _MODEL_NAME.match(lowered):
        return lowered.removeprefix("models/")
    return None


def _set_ratio(b: _Builder, value: str, allowed: Sequence[str]) -> None:
    m = _RATIO.match(value)
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        b.errors.append(f"{code('--ar ' + value)}: give the aspect ratio as W:H, e.g. `--ar 16:9`")
        return
    w, h = int(m.group(1)), int(m.group(2))
    reduced = Fraction(w, h)
    exact = f"{reduced.numerator}:{reduced.denominator}"
    snapped = exact if exact in allowed else snap_aspect_ratio(w, h, allowed)
    if snapped != exact:
        b.notes.append(f"--ar {w}:{h} is not a ratio Gemini makes; using the nearest, {snapped}")
    b.params = replace(b.params, aspect_ratio=snapped)


def _set_seed(b: _Builder, value: str) -> None:
    if not value.isdigit() or int(value) > MAX_SEED:
        b.errors.append(f"{code('--seed ' + value)}: the seed is a whole number from 0 to {MAX_SEED}")
        return
    b.params = replace(b.params, seed=int(value))


def _set_model(b: _Builder, value: str) -> None:
    model = resolve_model(value)
    if model is None:
        aliases = ", ".join(f"`{a}`" for a in ("flash", "pro", "flash3"))
        b.errors.append(
            f"{code('--model ' + value)}: use {aliases} or a full Gemini model name such as `gemini-2.5-flash-image`"
        )
        return
    b.params = replace(b.params, model=model)


def _set_size(b: _Builder, value: str) -> None:
    size = value.upper().replace("PX", "")
    if size not in IMAGE_SIZES:
        b.errors.append(f"{code('--size ' + value)}: use one of {', '.join(IMAGE_SIZES)}")
        return
    b.params = replace(b.params, image_size=size)


def _set_grid(b: _Builder, value: str) -> None:
    if not value.isdigit() or int(value) not in GRID_SIZES:
        b.errors.append(f"{code('--n ' + value)}: make 1, 2 or 4 images")
        return
    b.params = replace(b.params, grid_size=int(value))


def _set_negative(b: _Builder, value: str) -> None:
    words = tuple(w.strip() for w in value.split(",") if w.strip())
    if not words:
        b.errors.append("`--no`: name what to leave out, e.g. `--no trees, people`")
        return
    b.params = replace(b.params, negative=b.params.negative + words)


def _set_repeat(b: _Builder, value: str) -> None:
    if not value.isdigit() or not 1 <= int(value) <= MAX_REPEAT:
        b.errors.append(f"{code('--repeat ' + value)}: run the prompt 1 to {MAX_REPEAT} times")
        return
    b.params = replace(b.params, repeat=int(value))


# Midjourney's parameters Peel has no equivalent for, from its Parameter List
# (https://docs.midjourney.com/hc/en-us/articles/32859204029709-Parameter-List): each name (aliases included) with
# what Peel says about it. The value after one (`--v 6`, `--stylize 250`) goes with it; flags take none.
_NO_EQUIVALENT = "Gemini has no equivalent"
_SPEED = "interactive images always run fast; a batch's speed is `/batch speed:`"
MIDJOURNEY_IGNORED: Mapping[str, str] = {
    **dict.fromkeys(("v", "version", "niji"), _NO_EQUIVALENT),
    **dict.fromkeys(("stylize", "s", "chaos", "c", "weird", "w", "q", "quality", "style", "raw"), _NO_EQUIVALENT),
    **dict.fromkeys(("tile", "iw", "cw", "sw", "sv", "ow", "stop", "exp", "draft", "video", "motion"), _NO_EQUIVALENT),
    **dict.fromkeys(("loop", "end", "bs", "hd", "test", "testp", "uplight", "upbeta", "upanime"), _NO_EQUIVALENT),
    **dict.fromkeys(("personalize", "p", "profile", "public", "stealth"), _NO_EQUIVALENT),
    **dict.fromkeys(("sref", "cref", "oref"), "give an image link after it, or attach the image with refs:"),
    **dict.fromkeys(("relax", "fast", "turbo"), _SPEED),
}


def ignored_note(ignored: Sequence[tuple[str, str]]) -> str:
    """Return the one-line note naming the Midjourney parameters a prompt's run left out, grouped by reason.

    `ignored` holds each parameter as typed (`--v 6`) with why it was left out; what the user typed is echoed
    safely, as the note is shown in Discord under the job's line.
    """
    by_reason: dict[str, list[str]] = {}
    for typed, reason in ignored:
        by_reason.setdefault(reason, []).append(echo(typed, mid_line=True))
    parts = [f"{', '.join(shown)} ({reason})" for reason, shown in by_reason.items()]
    return f"Ignored Midjourney parameters: {'; '.join(parts)}"


def repeat_seeds(seed: int | None, repeat: int) -> tuple[int | None, ...]:
    """Return the seed of each of `repeat` runs: `seed`, `seed + 1`, … (wrapping past `MAX_SEED`), or all None.

    None leaves the seed to the job (a random base), so every run differs.
    """
    if seed is None:
        return (None,) * repeat
    return tuple((seed + i) % (MAX_SEED + 1) for i in range(repeat))


_NAMES = {
    "ar": "ar",
    "aspect": "ar",
    "seed": "seed",
    "sameseed": "seed",
    "no": "no",
    "model": "model",
    "m": "model",
    "size": "size",
    "n": "n",
    "repeat": "repeat",
    "r": "repeat",
}


def parse_prompt(prompt: str, *, aspect_ratios: Sequence[str] = GEMINI_ASPECT_RATIOS) -> ParsedPrompt:
    """Split `prompt` into its text and its `--name value` parameters.

    A parameter's value runs up to the next parameter (so `--no red trees, cars` works). Midjourney's parameters
    Peel has no equivalent for are left out and named in one note; other unknown names, missing values and
    malformed values are errors, each naming the parameter.
    """
    b = _Builder()
    ignored: list[tuple[str, str]] = []
    matches = list(_PARAM.finditer(prompt))
    text = prompt[: matches[0].start()] if matches else prompt
    seen: set[str] = set()
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(prompt)
        name, value = m.group(2).lower(), prompt[m.end() : end].strip()
        canonical = _NAMES.get(name)
        if canonical is None and name in MIDJOURNEY_IGNORED:
            ignored.append((" ".join(f"--{name} {value}".split()), MIDJOURNEY_IGNORED[name]))
            continue
        if canonical is None:
            close = difflib.get_close_matches(name, list(_NAMES), n=1, cutoff=0.6)
            known = "use --ar, --seed, --no, --model, --size, --n, --repeat"
            hint = f"did you mean `--{close[0]}`?" if close else known
            b.errors.append(f"`--{name}` is not a parameter Peel knows ({hint})")
            continue
        if not value:
            b.errors.append(f"`--{name}` needs a value")
            continue
        if canonical in seen and canonical != "no":
            b.errors.append(f"`--{name}` is given twice")
            continue
        seen.add(canonical)
        if canonical == "ar":
            _set_ratio(b, value, aspect_ratios)
        elif canonical == "seed":
            _set_seed(b, value)
        elif canonical == "no":
            _set_negative(b, value)
        elif canonical == "model":
            _set_model(b, value)
        elif canonical == "size":
            _set_size(b, value)
        elif canonical == "repeat":
            _set_repeat(b, value)
        else:
            _set_grid(b, value)
    if ignored:
        b.notes.append(ignored_note(ignored))
    text = " ".join(text.split())
    if not text:
        b.errors.append("the prompt is empty: describe the image before the parameters")
    return ParsedPrompt(text=text, params=b.params, notes=tuple(b.notes), errors=tuple(b.errors))
