r"""Permutation prompts, Midjourney style: `a {red, blue} bird --ar {1:1, 16:9}` is four prompts.

Pure. Midjourney's "Permutation Prompts" (https://docs.midjourney.com/docs/permutations) are the model:

- `{a, b, c}` gives one prompt per comma-separated option, in order; several groups multiply
  (`{a, b} {c, d}`: `a c`, `a d`, `b c`, `b d`); groups nest (`a {b, c {d, e}}`: `a b`, `a c d`, `a c e`).
- Groups may sit in the parameters too (`--ar {1:1, 16:9}`): the caller parses each expansion on its own.
- `\{`, `\}` and `\,` are a literal brace or comma (`\,` also inside a group, as Midjourney writes it).

What Peel decides beyond that:

- **A group without a comma is text, not a permutation**: `{name}` stays `{name}`, so a batch's template
  placeholders (`{prompt}`, `{name}`, `{folder}`, `bot.core.prompt_table`) pass through untouched, whether they are
  filled before or after expansion. A comma-less group that holds a permutation is one option (`{a {b, c}}`: `a b`,
  `a c`).
- **An unmatched brace is text**: `a } b` and `a { b` expand to themselves rather than refusing a prompt that was
  never meant as a permutation.
- **The total is capped** (`cap`), counted before anything is expanded, and groups nest at most `MAX_DEPTH` deep:
  past either, `PermutationError` says by how much.
- Options are stripped of the spaces around them, and runs of spaces in a result fold to one (`a {red, } cat`:
  `a red cat`, `a cat`).
"""

from dataclasses import dataclass
from math import prod

MAX_DEPTH = 8
_ESCAPABLE = "{},"


class PermutationError(ValueError):
    """A prompt that expands to more prompts than allowed, or nests too deep; `str()` says so for the user."""


@dataclass(frozen=True, slots=True)
class _Group:
    """`{a, b}`: one option per alternative, each a sequence of text and groups."""

    options: tuple["_Seq", ...]


_Part = str | _Group
_Seq = tuple[_Part, ...]


@dataclass(slots=True)
class _Parser:
    text: str
    keep_escapes: bool
    pos: int = 0

    def sequence(self, depth: int) -> tuple[_Seq, str | None]:
        """Read text and groups up to a `,` or `}` of the enclosing group (depth > 0) or the end.

        Returns the parts and the character that ended them (None: the end of the text).
        """
        parts: list[_Part] = []
        buf: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\" and self.pos + 1 < len(text) and text[self.pos + 1] in _ESCAPABLE:
                buf.append(text[self.pos : self.pos + 2] if self.keep_escapes else text[self.pos + 1])
                self.pos += 2
            elif ch == "{":
                parts.append("".join(buf))
                buf = []
                parts.append(self.group(depth + 1))
            elif ch in ",}" and depth > 0:
                parts.append("".join(buf))
                return tuple(p for p in parts if p != ""), ch
            else:
                buf.append(ch)
                self.pos += 1
        parts.append("".join(buf))
        return tuple(p for p in parts if p != ""), None

    def group(self, depth: int) -> _Part:
        """Read a group from its `{`: a `_Group`, or the text as typed when it is no permutation or is unclosed."""
        if depth > MAX_DEPTH:
            raise PermutationError(f"the {{…}} groups nest more than {MAX_DEPTH} deep")
        start = self.pos
        self.pos += 1  # the "{"
        options: list[_Seq] = []
        while True:
            seq, end = self.sequence(depth)
            options.append(seq)
            if end is None:  # unclosed: the brace is text, and what followed it is read again as plain text
                self.pos = start + 1
                return "{"
            self.pos += 1  # the "," or "}"
            if end == "}":
                break
        if len(options) == 1 and not any(isinstance(p, _Group) for p in options[0]):
            return "{" + "".join(str(p) for p in options[0]) + "}"  # `{name}`: a placeholder, not a permutation
        return _Group(tuple(options))


def _parse(text: str, *, keep_escapes: bool) -> _Seq:
    parser = _Parser(text, keep_escapes)
    parts: list[_Part] = []
    while True:
        seq, _ = parser.sequence(0)
        parts.extend(seq)
        if parser.pos >= len(text):
            return tuple(parts)


def _count(seq: _Seq) -> int:
    return prod(sum(_count(o) for o in p.options) if isinstance(p, _Group) else 1 for p in seq)


def _expand(seq: _Seq) -> list[str]:
    results = [""]
    for part in seq:
        if isinstance(part, str):
            results = [r + part for r in results]
        else:
            options = [" ".join(x.split()) for o in part.options for x in _expand(o)]
            results = [r + o for r in results for o in options]
    return results


def count(text: str) -> int:
    """Return how many prompts `text` expands to (1 when it holds no permutation), without expanding it.

    Raises:
        PermutationError: the groups nest deeper than `MAX_DEPTH`.
    """
    return _count(_parse(text, keep_escapes=True))


def expand(text: str, *, cap: int, keep_escapes: bool = False) -> tuple[str, ...]:
    r"""Return every prompt `text` stands for, in order; `(text,)` with spaces folded when it has no permutation.

    Args:
        text: a prompt, its parameters included.
        cap: the most prompts allowed.
        keep_escapes: keep `\{`, `\}` and `\,` as typed, for a text that is expanded again later (a batch's
            command prompt, before each image's prompt is filled into it and the whole is expanded).

    Raises:
        PermutationError: more than `cap` prompts, or groups nested deeper than `MAX_DEPTH`.
    """
    seq = _parse(text, keep_escapes=keep_escapes)
    total = _count(seq)
    if total > cap:
        raise PermutationError(f"the {{…}} permutations make {total:,} prompts; at most {cap:,} are allowed at once")
    return tuple(" ".join(r.split()) for r in _expand(seq))


def has_permutations(text: str) -> bool:
    """Tell whether `text` holds a `{a, b}` group (escaped braces and comma-less groups are none)."""
    return any(isinstance(p, _Group) for p in _parse(text, keep_escapes=True))


__all__ = ["MAX_DEPTH", "PermutationError", "count", "expand", "has_permutations"]
