"""Control characters in text that came from a user: what Peel drops before echoing it or naming a file with it.

Bidirectional controls (Unicode TR9 explicit formatting characters, plus the implicit marks) are dropped: U+202E
turns `gnp.exe` into what reads as `exe.png`, so names and echoed text drop them all. Other control characters
(category Cc: C0, DEL and C1) are replaced, by what the caller chooses (a space in a message, `_` in a name).
"""

import re

_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def strip_controls(text: str, *, replacement: str = "") -> str:
    """Return `text` without bidirectional controls, and with control characters (Cc) replaced by `replacement`."""
    return _CONTROL.sub(replacement, _BIDI.sub("", text))
