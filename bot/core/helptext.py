"""`/help`'s text: what Peel does and how, laid out from the registered commands, plus a note for Midjourney users.

Pure: the Discord layer reads the command tree into `CommandDoc`s (names, descriptions, options), so a new command
appears in `/help` without anyone writing it down; here they are grouped and worded.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The order commands are shown in; a command of no section goes under "More".
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Make images", ("imagine", "blend", "describe")),
    ("Your jobs and settings", ("show", "queue", "cancel", "settings", "prefer", "info")),
    ("Batches and groups", ("batch", "group")),
    ("Admins", ("budget", "usage")),
)
OTHER_SECTION = "More"

_NUMBERED = re.compile(r"^(?P<base>[a-z_]+?)(?P<n>[0-9]+)$")

MIDJOURNEY_NOTES = "\n".join(
    [
        "Peel works like Midjourney's bot, on Google's Gemini image models (Nano Banana).",
        "**Parameters Peel keeps**: `--ar`/`--aspect` (snapped to the nearest ratio Gemini makes), `--seed`, `--no`, "
        "`--repeat`/`--r`, and `{a, b}` permutations; Peel's own `--model flash|pro|flash3`, `--size 1K|2K|4K`, "
        "`--n 1|2|4` (images per grid); `--<name>` for your `/prefer option` sets.",
        "**References**: attach images to `/imagine` (mark them with `refs: 1=style 2=character 3=object`), or give "
        "links: `--sref <link>` (style), `--cref <link>` (character), `--oref <link>` (object), or a bare image link. "
        "Nano Banana takes 3 references, Pro and Nano Banana 2 take 14.",
        "**Parameters Gemini has no use for** (`--v`, `--stylize`, `--chaos`, `--weird`, `--q`, `--style`, `--tile`, "
        "…) are ignored, and the answer says which.",
        "**Differences**: U# posts the image at full size (no model call); Upscale 2K/4K re-draws it at that size; "
        "Vary, Zoom Out, Custom Zoom, Make Square, Pan and Edit send the image to Gemini with an instruction; Vary "
        "(Region) shows the image under a numbered 3×3 grid to pick cells on (or type a box) and changes nothing "
        "outside them; Remix mode and "
        "subtle or strong "
        "variations are in `/settings`; replies to an image in a thread edit it; `/batch` runs thousands of images "
        "as one job.",
    ]
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandDoc:
    """One command as `/help` shows it: its full name (`prefer option set`), description and options."""

    name: str
    description: str
    options: tuple[tuple[str, bool], ...] = ()  # (name, required), in the command's order


def usage(doc: CommandDoc) -> str:
    """Return how a command is typed: `/name required [optional]`, numbered siblings folded (`[image…image10]`)."""
    names = {name for name, _ in doc.options}
    parts: list[str] = []
    folded: dict[str, int] = {}
    for name, required in doc.options:
        m = _NUMBERED.match(name)
        if m is not None and m["base"] in names:
            folded[m["base"]] = max(folded.get(m["base"], 1), int(m["n"]))
            continue
        parts.append(name if required else f"[{name}]")
    for base, last in folded.items():
        shown = f"[{base}]"
        parts[parts.index(shown)] = f"[{base}…{base}{last}]"
    return " ".join([f"/{doc.name}", *parts])


def _section_of(name: str) -> str:
    top = name.split()[0]
    for title, commands in SECTIONS:
        if top in commands:
            return title
    return OTHER_SECTION


def _rank(name: str) -> tuple[int, str]:
    top = name.split()[0]
    order = [c for _, commands in SECTIONS for c in commands]
    return (order.index(top) if top in order else len(order), name)


def help_sections(docs: Iterable[CommandDoc]) -> list[tuple[str, str]]:
    """Return `/help`'s sections, each a title and one line per command (`/usage` — description)."""
    by_section: dict[str, list[str]] = {}
    for doc in sorted(docs, key=lambda d: _rank(d.name)):
        line = f"`{usage(doc)}` — {doc.description}"
        by_section.setdefault(_section_of(doc.name), []).append(line)
    titles: Sequence[str] = [title for title, _ in SECTIONS] + [OTHER_SECTION]
    return [(title, "\n".join(by_section[title])) for title in titles if title in by_section]


__all__ = ["MIDJOURNEY_NOTES", "OTHER_SECTION", "SECTIONS", "CommandDoc", "help_sections", "usage"]
