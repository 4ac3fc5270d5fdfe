"""References as Midjourney users think of them: style, character or object, and image links in a prompt (pure).

Midjourney takes `--sref <url>` (style reference), `--cref <url>` (character reference) and `--oref <url>` (omni /
object reference), and image links at the start of a prompt as image prompts
(https://docs.midjourney.com/hc/en-us/articles/32180011136653-Style-Reference,
https://docs.midjourney.com/hc/en-us/articles/32162917505293-Character-Reference). Peel reads the same in any place
of the prompt: each parameter takes one or more links, and a bare `http(s)://` link is a plain reference. Attached
images are marked with the `/imagine` option `refs:`, `1=style 2=character 3=object` (an attachment option cannot
carry a label of its own in Discord). Gemini has no reference roles, so the prompt says what each image is for
(`role_lines`); the images are numbered as they are sent: attachments first, then the links in prompt order.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.core.render import code


class RefRole(StrEnum):
    """What a reference image is for."""

    STYLE = "style"
    CHARACTER = "character"
    OBJECT = "object"


PARAMETERS = {"--sref": RefRole.STYLE, "--cref": RefRole.CHARACTER, "--oref": RefRole.OBJECT}
_LINK = re.compile(r"https?://\S+", re.IGNORECASE)
_LABEL = re.compile(r"(\d+)\s*[=:]\s*([a-z]+)")
ROLE_WORDS = {
    RefRole.STYLE: "Use image {n} only for its style (colours, lighting, medium, texture and mood); do not copy "
    "what it shows.",
    RefRole.CHARACTER: "Image {n} shows a character: keep the same character (face, hair, build and clothing) in "
    "the new picture.",
    RefRole.OBJECT: "Image {n} shows an object: include that same object, keeping its shape, colours and details.",
}


class RefParseError(ValueError):
    """A reference parameter or label cannot be read; the message says how to write it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkedReference:
    """An image link found in a prompt, and what it is for (None: a plain reference)."""

    url: str
    role: RefRole | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptLinks:
    """A prompt with its image links taken out."""

    text: str
    links: tuple[LinkedReference, ...]


def take_links(prompt: str) -> PromptLinks:
    """Take `--sref`/`--cref`/`--oref` links and bare image links out of a prompt (module docstring).

    Raises:
        RefParseError: a reference parameter followed by no link.
    """
    tokens = prompt.split()
    kept: list[str] = []
    links: list[LinkedReference] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        role = PARAMETERS.get(token.lower())
        if role is not None:
            start = i + 1
            while i + 1 < len(tokens) and _LINK.fullmatch(tokens[i + 1]):
                i += 1
                links.append(LinkedReference(url=tokens[i], role=role))
            if i + 1 == start:
                raise RefParseError(f"`{token}` takes one or more image links (https://…), e.g. `{token} https://…`.")
        elif _LINK.fullmatch(token):
            links.append(LinkedReference(url=token, role=None))
        else:
            kept.append(token)
        i += 1
    return PromptLinks(text=" ".join(kept), links=tuple(links))


def parse_labels(text: str | None, count: int) -> tuple[RefRole | None, ...]:
    """Read the `refs:` option (`1=style 2=character`) for `count` attached images; unlabelled ones are plain.

    Raises:
        RefParseError: a label that is not N=style|character|object for an attached image N.
    """
    roles: list[RefRole | None] = [None] * count
    rest = _LABEL.sub("", (text or "").lower()).replace(",", " ").strip()
    if rest:
        raise RefParseError("Write `refs` as image number = style, character or object, e.g. `1=style 2=character`.")
    for number, word in _LABEL.findall((text or "").lower()):
        n = int(number)
        if not 1 <= n <= count:
            raise RefParseError(f"`refs`: there is no attached image {n} ({count} attached).")
        try:
            roles[n - 1] = RefRole(word)
        except ValueError:
            raise RefParseError(f"`refs`: {code(word)} is not a role; use style, character or object.") from None
    return tuple(roles)


def role_lines(roles: Sequence[RefRole | None]) -> str:
    """Return what the prompt tells Gemini about marked references ("" when none is marked)."""
    lines = [ROLE_WORDS[role].format(n=n) for n, role in enumerate(roles, start=1) if role is not None]
    return "\n".join(lines)


def with_roles(prompt: str, roles: Sequence[RefRole | None]) -> str:
    """Return the model prompt with the references' roles said after it."""
    lines = role_lines(roles)
    return f"{prompt}\n\n{lines}" if lines else prompt


_ROLE_LINE = re.compile("|".join(re.escape(words).replace(re.escape("{n}"), r"\d+") for words in ROLE_WORDS.values()))


def without_roles(prompt: str) -> str:
    """Return a model prompt without the roles `with_roles` added (for a tool that sends other images)."""
    head, sep, tail = prompt.rpartition("\n\n")
    if sep and tail and all(_ROLE_LINE.fullmatch(line) for line in tail.split("\n")):
        return head
    return prompt


__all__ = [
    "PARAMETERS",
    "LinkedReference",
    "PromptLinks",
    "RefParseError",
    "RefRole",
    "parse_labels",
    "role_lines",
    "take_links",
    "with_roles",
    "without_roles",
]
