"""Safe, unique member names for the ZIP archives Peel builds, and file names from uploads (pure: no I/O).

A name comes from a user (an uploaded file's name, a prompt-derived title), so it is cleaned before it goes into
an archive that someone will extract: backslashes become `/`, `.`/`..`/empty segments are dropped (so no name is
absolute or climbs out of the extraction directory), bidirectional controls (U+202E and kin) are dropped, control
characters and the characters Windows refuses (`<>:"|?*`) become `_`, segments lose trailing dots and spaces, and a
segment Windows reserves for a device (`CON`, `nul.txt`, `COM1.tar.gz`) gets a leading `_`.
Names are then made unique, ignoring case (Windows and macOS extract `A.png` and `a.png` onto one file): the second
`a.png` becomes `a (2).png`, the third `a (3).png`. A file never takes the name of a directory of other members, and
a directory never takes the name of a file: the later one is renamed the same way.
"""

import unicodedata
from collections.abc import Iterable

from usertext.controls import strip_controls

_REPLACED = frozenset('<>:"|?*')
# Windows refuses these names for files and folders, "followed immediately by an extension" too (`NUL.txt` and
# `NUL.tar.gz` are both `NUL`): Microsoft, "Naming Files, Paths, and Namespaces" (learn.microsoft.com, Win32 File I/O).
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"{d}{n}" for d in ("COM", "LPT") for n in (*"0123456789", "¹", "²", "³")}
)
_MAX_SEGMENT_CHARS = 200
FALLBACK_NAME = "file"


def sanitize_name(name: str) -> str:
    """Return `name` cleaned into a relative, `/`-separated path that is safe to extract (never empty)."""
    given = name
    name = unicodedata.normalize("NFC", name).replace("\\", "/")
    segments: list[str] = []
    for raw in name.split("/"):
        segment = "".join("_" if c in _REPLACED else c for c in strip_controls(raw, replacement="_"))
        segment = segment.rstrip(" .").lstrip(" ")
        if segment in ("", ".", ".."):
            continue
        segments.append(_shorten("_" + segment if is_device_name(segment) else segment))
    cleaned = "/".join(segments) or FALLBACK_NAME
    return given if cleaned == given else cleaned  # the caller's own string when it was safe: no copy to keep


def is_device_name(segment: str) -> bool:
    """Tell whether Windows reserves a path segment for a device: `con`, `NUL.txt`, `com1.tar.gz`."""
    return segment.split(".", 1)[0].rstrip(" ").upper() in _DEVICE_NAMES


def suffix(name: str) -> str:
    """Return `PurePosixPath(name).suffix` (`a/b.tar.gz` → `.gz`, `.env` → ``), without making a Path.

    On Python 3.11 a Path interns each part of its name: run over 10,000 uploaded or output names, that grew the
    interpreter's interned-string table by about 2 MB for good.
    """
    parts = [part for part in name.split("/") if part not in ("", ".")]
    leaf = parts[-1] if parts else ""
    dot = leaf.rfind(".")
    return leaf[dot:] if 0 < dot < len(leaf) - 1 else ""


def _shorten(segment: str) -> str:
    if len(segment) <= _MAX_SEGMENT_CHARS:
        return segment
    stem, dot, ext = segment.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        return segment[:_MAX_SEGMENT_CHARS]
    return stem[: _MAX_SEGMENT_CHARS - len(ext) - 1] + "." + ext


def numbered(name: str, number: int) -> str:
    """Return `name` with ` (number)` before its extension: `a/b.png` → `a/b (2).png`, `.env` → `.env (2)`."""
    head, slash, leaf = name.rpartition("/")
    stem, dot, ext = leaf.rpartition(".")
    leaf = f"{stem} ({number}).{ext}" if dot and stem else f"{leaf} ({number})"
    return f"{head}{slash}{leaf}"


def _folded(name: str) -> str:
    """Return `name.casefold()`, or `name` itself when folding leaves it as it is.

    Most names (`00042.png`) are already folded: the sets then hold the member's own name rather than a copy of it,
    which at 10,000 members is about half a megabyte.
    """
    folded = name.casefold()
    return name if folded == name else folded


class ArchiveNames:
    """Assign each member a sanitized name no other member of the archive has; deterministic in input order.

    A caller that writes a manifest before the archive can run the same names through its own `ArchiveNames`
    to learn what each member will be called.
    """

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._files: set[str] = set()  # casefolded names of members
        self._dirs: set[str] = set()  # casefolded directory paths the members live in
        self._dir_alias: dict[str, str] = {}  # casefolded directory path -> the directory path used instead
        for name in reserved:
            self.add(name)

    def add(self, name: str) -> str:
        """Return the name the member called `name` gets in the archive, and reserve it."""
        *dirs, leaf = sanitize_name(name).split("/")
        parent = ""
        for segment in dirs:
            path = f"{parent}/{segment}" if parent else segment
            folded = _folded(path)
            if folded in self._dir_alias:
                path = self._dir_alias[folded]
            elif folded in self._files:  # a file holds this path: move this directory aside, for good
                alias = self._unique(path)
                self._dir_alias[folded] = alias
                path = alias
            self._dirs.add(_folded(path))
            parent = path
        chosen = self._unique(f"{parent}/{leaf}" if parent else leaf)
        self._files.add(_folded(chosen))
        return chosen

    def _unique(self, path: str) -> str:
        candidate, number = path, 1
        while self._is_taken(candidate):
            number += 1
            candidate = numbered(path, number)
        return candidate

    def _is_taken(self, path: str) -> bool:
        folded = _folded(path)
        return folded in self._files or folded in self._dirs or folded in self._dir_alias


__all__ = ["FALLBACK_NAME", "ArchiveNames", "is_device_name", "numbered", "sanitize_name", "suffix"]
