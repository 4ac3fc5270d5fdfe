"""The region of an image Vary (Region) changes, as users type it (pure).

Discord has no drawing tool, so a region is named: a cell of a 3×3 grid (`top-left`, `top`, `top-right`, `left`,
`center`, `right`, `bottom-left`, `bottom`, `bottom-right`), a half (`left half`, `right half`, `top half`,
`bottom half`), or a box in percent of the width and height, `x1 y1 x2 y2` (`10 20 60 80`: from 10 % to 60 %
across, 20 % to 80 % down). A region is `(left, top, right, bottom)` as fractions of the image, 0 to 1.

The picker shows the image under a 3×3 grid numbered 1–9 (left to right, top to bottom); the cells picked there make
one region, their bounding box (`cells_region`).
"""

import re

Region = tuple[float, float, float, float]

_THIRDS = ((0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.0))
_ROWS = {"top": 0, "middle": 1, "center": 1, "centre": 1, "bottom": 2}
_COLS = {"left": 0, "middle": 1, "center": 1, "centre": 1, "right": 2}
HALVES: dict[str, Region] = {
    "left half": (0.0, 0.0, 0.5, 1.0),
    "right half": (0.5, 0.0, 1.0, 1.0),
    "top half": (0.0, 0.0, 1.0, 0.5),
    "bottom half": (0.0, 0.5, 1.0, 1.0),
}
MIN_SIDE = 0.05  # a box thinner than 5 % of the image leaves the model nothing to draw in
NAMES = (
    "top-left, top, top-right, left, center, right, bottom-left, bottom, bottom-right, "
    "left half, right half, top half, bottom half, or a box in percent: x1 y1 x2 y2"
)


class RegionError(ValueError):
    """The region cannot be read; the message says what is accepted."""


def _cell(row: int, col: int) -> Region:
    (left, right), (top, bottom) = _THIRDS[col], _THIRDS[row]
    return left, top, right, bottom


def _named(words: str) -> Region | None:
    if words in HALVES:
        return HALVES[words]
    parts = words.replace("-", " ").split()
    if len(parts) == 1:
        word = parts[0]
        if word in ("center", "centre", "middle"):
            return _cell(1, 1)
        if word in ("top", "bottom"):
            return _cell(_ROWS[word], 1)
        if word in ("left", "right"):
            return _cell(1, _COLS[word])
        return None
    if len(parts) == 2 and parts[0] in _ROWS and parts[1] in _COLS:
        return _cell(_ROWS[parts[0]], _COLS[parts[1]])
    return None


def parse_region(text: str) -> Region:
    """Return the region `text` names (module docstring).

    Raises:
        RegionError: neither a known name nor four percentages making a box at least 5 % on each side.
    """
    words = " ".join(text.strip().lower().split())
    named = _named(words)
    if named is not None:
        return named
    numbers = re.fullmatch(r"\s*" + r"[\s,;]+".join([r"(\d+(?:\.\d+)?)\s*%?"] * 4) + r"\s*", words)
    if numbers is None:
        raise RegionError(f"Name the region: {NAMES}.")
    x1, y1, x2, y2 = (float(n) / 100 for n in numbers.groups())
    left, right, top, bottom = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
    if right > 1 or bottom > 1:
        raise RegionError("A box in percent goes from 0 to 100 across and down.")
    if right - left < MIN_SIDE or bottom - top < MIN_SIDE:
        raise RegionError(f"The box must be at least {MIN_SIDE:.0%} wide and high.")
    return left, top, right, bottom


CELLS = "123456789"
CELL_NAMES = ("top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right")


def cells_region(cells: str) -> Region:
    """Return the bounding box of grid cells `cells` ("12": the top row's left two cells), numbered 1–9 row by row.

    Raises:
        RegionError: no cell, or a character that is not a cell number.
    """
    if not cells or any(c not in CELLS for c in cells):
        raise RegionError("Pick one or more cells, 1 to 9.")
    rows = [(int(c) - 1) // 3 for c in cells]
    cols = [(int(c) - 1) % 3 for c in cells]
    left, top, _, _ = _cell(min(rows), min(cols))
    _, _, right, bottom = _cell(max(rows), max(cols))
    return left, top, right, bottom


def _grid_label(region: Region) -> str | None:
    """Name a box on the picker's grid lines: a row, a column, or its cells ("cells 1–2", "cells 1–5")."""
    edges = [round(v * 3, 6) for v in region]
    if any(e != int(e) for e in edges):
        return None
    left, top, right, bottom = (int(e) for e in edges)
    if (left, right) == (0, 3) and bottom - top == 1:
        return f"{('top', 'middle', 'bottom')[top]} row"
    if (top, bottom) == (0, 3) and right - left == 1:
        return f"{('left', 'center', 'right')[left]} column"
    return f"cells {top * 3 + left + 1}–{(bottom - 1) * 3 + right}"


def region_label(region: Region) -> str:
    """Return a short name of a region for messages ("top-left", "left half", "cells 1–5", "10–60 % × 20–80 %").

    A box of several picked cells is named by its first and last cell ("cells 1–5": cells 1, 2, 4 and 5).
    """
    for name, box in HALVES.items():
        if _close(box, region):
            return name
    for row_name, row in (("top", 0), ("middle", 1), ("bottom", 2)):
        for col_name, col in (("left", 0), ("center", 1), ("right", 2)):
            if _close(_cell(row, col), region):
                if row == 1:
                    return "center" if col == 1 else col_name
                return row_name if col == 1 else f"{row_name}-{col_name}"
    grid = _grid_label(region)
    if grid is not None:
        return grid
    left, top, right, bottom = (round(v * 100) for v in region)
    return f"{left}–{right} % × {top}–{bottom} %"


def _close(a: Region, b: Region) -> bool:
    return all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


__all__ = [
    "CELLS",
    "CELL_NAMES",
    "HALVES",
    "NAMES",
    "Region",
    "RegionError",
    "cells_region",
    "parse_region",
    "region_label",
]
