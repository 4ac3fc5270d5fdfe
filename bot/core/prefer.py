"""A user's prompt preferences, as Midjourney's `/prefer suffix` and `/prefer option set` keep them.

`/prefer suffix` adds text and parameters to the end of every prompt a user types; `/prefer option set name value`
saves parameters that `--name` in a prompt stands for (Midjourney: "Prefer Option" and "Prefer Suffix",
https://docs.midjourney.com/docs/settings-and-presets; at most 20 custom options there too).

Pure: `personalize` rewrites a prompt's text before it is parsed (`bot.core.params.parse_prompt`), so what the
message shows is what ran. The rules:

* `--name` of a saved set is replaced by its parameters, wherever it stands; a set never expands another (no
  recursion), and a `--name` that is no saved set is left for the parser to handle as any unknown parameter.
* The suffix's words go after the prompt's words and before its parameters; each of the suffix's parameters is added
  unless the prompt already sets what it sets (the prompt wins, so `--ar 1:1` typed beats a suffix's `--ar 16:9`).
* Applying a suffix twice changes nothing (a Remix box shows the prompt with the suffix already in it).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from itertools import pairwise

from bot.core.params import PromptParams, parse_prompt

MAX_OPTION_SETS = 20  # Midjourney's own limit of custom options
MAX_SUFFIX_CHARS = 500
MAX_OPTION_CHARS = 500
OPTION_NAME = re.compile(r"[a-z0-9_-]{1,32}")

# Every parameter name Peel reads (bot.core.params) and the ones of Midjourney's parameter list
# (https://docs.midjourney.com/docs/parameter-list): a saved set may not shadow any of them, whether Peel uses it
# or ignores it, so a Midjourney prompt never means something else in Peel.
RESERVED_NAMES = frozenset(
    {
        # Peel's own (bot.core.params._NAMES), and /batch's speed flags
        *("ar", "aspect", "seed", "sameseed", "no", "model", "m", "size", "n", "repeat", "r", "relax", "fast"),
        *("ref", "sref", "cref", "oref", "style", "character", "object"),
        # Midjourney's
        *("v", "version", "niji", "stylize", "s", "chaos", "c", "weird", "w", "q", "quality", "tile", "iw"),
        *("sw", "cw", "ow", "sv", "p", "personalize", "profile", "raw", "stop", "draft", "turbo", "video"),
        *("motion", "loop", "end", "bs", "hd", "test", "testp", "creative", "upbeta", "uplight", "exp", "public"),
        *("stealth", "help"),
    }
)

_PARAM = re.compile(r"(?:^|(?<=\s))(?:--|—)([A-Za-z][A-Za-z0-9_-]*)(?=\s|$)")
_PARAM_NAME = re.compile(r"(?:^|\s)(?:--|—)([A-Za-z][A-Za-z0-9_-]*)")
_ANY_PARAM = re.compile(r"(?:^|\s)(?:--|—)[A-Za-z]")


class PreferError(ValueError):
    """A suffix or option set Peel will not save; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptPrefs:
    """What one user saved: a suffix (empty: none) and option sets by name."""

    suffix: str = ""
    option_sets: Mapping[str, str] | None = None

    @property
    def empty(self) -> bool:
        """Tell whether nothing is saved (the prompt goes as typed)."""
        return not self.suffix and not self.option_sets


def check_name(name: str) -> str:
    """Return an option set's name as stored (lower case, no leading dashes).

    Raises:
        PreferError: not 1-32 of a-z, 0-9, `_` and `-`, or the name of a parameter.
    """
    cleaned = name.strip().lower().removeprefix("--")
    if not OPTION_NAME.fullmatch(cleaned):
        raise PreferError("an option set's name is 1 to 32 of a-z, 0-9, _ and -, e.g. `wide`")
    if cleaned in RESERVED_NAMES:
        raise PreferError(f"`--{cleaned}` is a parameter; pick another name for the set")
    return cleaned


def _errors(text: str) -> tuple[str, ...]:
    """Return what the prompt parser says is wrong with `text`'s parameters (the words before them stand in)."""
    return parse_prompt(f"x {text}").errors


def _unknown(text: str) -> str | None:
    """Return the first `--name` in `text` that is no parameter (a set's name would expand a second time)."""
    for m in _PARAM_NAME.finditer(text):
        if m.group(1).lower() not in RESERVED_NAMES:
            return m.group(1)
    return None


def _check_parameters(text: str) -> None:
    unknown = _unknown(text)
    if unknown is not None:
        raise PreferError(f"`--{unknown}` is not a parameter (an option set cannot name another)")
    errors = _errors(text)
    if errors:
        raise PreferError("; ".join(errors))


def check_suffix(value: str) -> str:
    """Return a suffix as stored (spaces collapsed).

    Raises:
        PreferError: too long, or a parameter in it that does not parse.
    """
    cleaned = " ".join(value.split())
    if len(cleaned) > MAX_SUFFIX_CHARS:
        raise PreferError(f"a suffix is at most {MAX_SUFFIX_CHARS} characters; this one is {len(cleaned)}")
    _check_parameters(cleaned)
    return cleaned


def check_options(value: str) -> str:
    """Return an option set's parameters as stored (spaces collapsed).

    Raises:
        PreferError: empty, too long, words that are not parameters, or a parameter that does not parse.
    """
    cleaned = " ".join(value.split())
    if len(cleaned) > MAX_OPTION_CHARS:
        raise PreferError(f"an option set is at most {MAX_OPTION_CHARS} characters; this one is {len(cleaned)}")
    if not cleaned.startswith(("--", "—")):
        raise PreferError("an option set holds parameters only, e.g. `--ar 16:9 --model pro` (words go in a suffix)")
    _check_parameters(cleaned)
    return cleaned


def expand_options(prompt: str, option_sets: Mapping[str, str]) -> str:
    """Return `prompt` with each `--name` of a saved set replaced by the set's parameters (one pass, no recursion).

    A name that is a parameter is never expanded, even if a set of that name was stored before it became one.
    """
    if not option_sets:
        return prompt

    def swap(m: re.Match[str]) -> str:
        name = m.group(1).lower()
        if name in RESERVED_NAMES or name not in option_sets:
            return m.group(0)
        return option_sets[name]

    return " ".join(_PARAM.sub(swap, prompt).split())


def _split(prompt: str) -> tuple[str, str]:
    """Return a prompt's words and its parameters (from the first `--name` on)."""
    m = _ANY_PARAM.search(prompt)
    if m is None:
        return prompt.strip(), ""
    return prompt[: m.start()].strip(), prompt[m.start() :].strip()


def _sets(params: PromptParams) -> set[str]:
    return {f.name for f in fields(params) if getattr(params, f.name) not in (None, ())}


def _suffix_params(suffix_params: str, prompt_params: str) -> str:
    """Return the suffix's parameters the prompt's own do not already set, in the suffix's order."""
    taken = _sets(parse_prompt(f"x {prompt_params}").params)
    kept: list[str] = []
    starts = [m.start() for m in _ANY_PARAM.finditer(suffix_params)] + [len(suffix_params)]
    for start, end in pairwise(starts):
        one = suffix_params[start:end].strip()
        if not _sets(parse_prompt(f"x {one}").params) & taken:
            kept.append(one)
    return " ".join(kept)


def apply_suffix(prompt: str, suffix: str) -> str:
    """Return `prompt` with the suffix's words after its own and the suffix's parameters the prompt lacks.

    Idempotent: a prompt whose words already end with the suffix's words gets them once.
    """
    if not suffix:
        return prompt
    words, params = _split(prompt)
    suffix_words, suffix_params = _split(suffix)
    if suffix_words and not words.endswith(suffix_words):
        words = f"{words} {suffix_words}".strip()
    extra = _suffix_params(suffix_params, params) if suffix_params else ""
    return " ".join(part for part in (words, params, extra) if part)


def personalize(prompt: str, prefs: PromptPrefs) -> str:
    """Return the prompt as it runs for a user: their option sets expanded, then their suffix applied."""
    if prefs.empty:
        return prompt
    return apply_suffix(expand_options(prompt, prefs.option_sets or {}), prefs.suffix)


__all__ = [
    "MAX_OPTION_CHARS",
    "MAX_OPTION_SETS",
    "MAX_SUFFIX_CHARS",
    "RESERVED_NAMES",
    "PreferError",
    "PromptPrefs",
    "apply_suffix",
    "check_name",
    "check_options",
    "check_suffix",
    "expand_options",
    "personalize",
]
