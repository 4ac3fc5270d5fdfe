"""`{a, b}` permutations and `--repeat` in `python -m bot imagine` and `batch`, as real processes."""

from pathlib import Path

import pytest

from tests.e2e.cli.conftest import base_env, make_zip, read_results, run_cli

pytestmark = pytest.mark.timeout(180)


def test_imagine_prints_the_count_and_makes_one_grid_per_expansion_and_repeat(tmp_path: Path) -> None:
    run = run_cli(
        ["imagine", "a {red, blue} kite --n 1", "--repeat", "2", "--out", "kites", "--data", "data"],
        cwd=tmp_path,
        env=base_env(),
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "4 grids (4 images), about $" in run.stderr
    grids = [f for f in (tmp_path / "kites").iterdir() if f.name.endswith("_grid.png")]
    assert len(grids) == 4
    assert run.stderr.count("of a red kite --n 1") == 2 and run.stderr.count("of a blue kite --n 1") == 2


def test_batch_makes_each_image_once_per_permutation_and_repeat(tmp_path: Path) -> None:
    make_zip(tmp_path / "in.zip", 2)
    run = run_cli(
        [
            "batch",
            "in.zip",
            "--prompt",
            "a {fox, owl} of this",
            "--repeat",
            "2",
            "--out",
            "r.zip",
            "--data",
            "data",
            "--yes",
        ],
        cwd=tmp_path,
        env=base_env(),
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "one prompt × 2 permutations × 2 repeats" in run.stderr
    names, manifest = read_results(tmp_path / "r.zip")
    assert len([n for n in names if n.endswith(".png")]) == 8
    items = manifest["items"]
    assert isinstance(items, list)
    assert sorted(i["prompt"] for i in items if i["status"] == "ok") == ["a fox of this"] * 4 + ["a owl of this"] * 4
