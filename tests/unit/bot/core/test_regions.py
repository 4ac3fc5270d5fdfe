"""Vary (Region): the regions users can name, and their boxes."""

import pytest

from bot.core.regions import RegionError, cells_region, parse_region, region_label


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("top-left", (0.0, 0.0, 1 / 3, 1 / 3)),
        ("Bottom Right", (2 / 3, 2 / 3, 1.0, 1.0)),
        ("center", (1 / 3, 1 / 3, 2 / 3, 2 / 3)),
        ("top", (1 / 3, 0.0, 2 / 3, 1 / 3)),
        ("right", (2 / 3, 1 / 3, 1.0, 2 / 3)),
        ("left half", (0.0, 0.0, 0.5, 1.0)),
        ("bottom  half", (0.0, 0.5, 1.0, 1.0)),
        ("10 20 60 80", (0.1, 0.2, 0.6, 0.8)),
        ("60%, 80%, 10%, 20%", (0.1, 0.2, 0.6, 0.8)),  # corners in either order
    ],
)
def test_parse_region_returns_the_box_when_named_or_given_in_percent(text: str, box: tuple[float, ...]) -> None:
    assert parse_region(text) == pytest.approx(box)


@pytest.mark.parametrize("text", ["", "somewhere", "10 20 60", "10 20 160 80", "10 20 12 80", "upper left"])
def test_parse_region_refuses_saying_what_is_accepted_when_unreadable(text: str) -> None:
    with pytest.raises(RegionError):
        parse_region(text)


def test_region_label_names_the_cell_half_or_percent_box_when_shown() -> None:
    assert region_label(parse_region("top-left")) == "top-left"
    assert region_label(parse_region("centre")) == "center"
    assert region_label(parse_region("left")) == "left"
    assert region_label(parse_region("right half")) == "right half"
    assert region_label(parse_region("10 20 60 80")) == "10–60 % × 20–80 %"


@pytest.mark.parametrize(
    ("cells", "box"),
    [
        ("1", (0.0, 0.0, 1 / 3, 1 / 3)),
        ("12", (0.0, 0.0, 2 / 3, 1 / 3)),
        ("21", (0.0, 0.0, 2 / 3, 1 / 3)),  # picked in any order
        ("5", (1 / 3, 1 / 3, 2 / 3, 2 / 3)),
        ("19", (0.0, 0.0, 1.0, 1.0)),  # opposite corners: the bounding box is the whole grid
        ("68", (1 / 3, 1 / 3, 1.0, 1.0)),
        ("147", (0.0, 0.0, 1 / 3, 1.0)),
    ],
)
def test_cells_region_is_the_bounding_box_of_the_picked_cells(cells: str, box: tuple[float, ...]) -> None:
    assert cells_region(cells) == pytest.approx(box)


@pytest.mark.parametrize("cells", ["", "0", "1a", "10"])
def test_cells_region_refuses_anything_but_cell_numbers(cells: str) -> None:
    with pytest.raises(RegionError):
        cells_region(cells)


def test_region_label_names_picked_cells_by_row_column_or_first_and_last_cell() -> None:
    assert region_label(cells_region("9")) == "bottom-right"
    assert region_label(cells_region("123")) == "top row"
    assert region_label(cells_region("258")) == "center column"
    assert region_label(cells_region("12")) == "cells 1–2"
    assert region_label(cells_region("15")) == "cells 1–5"
    assert region_label(cells_region("19")) == "cells 1–9"
