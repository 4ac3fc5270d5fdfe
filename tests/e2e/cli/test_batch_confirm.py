"""`python -m bot batch` asks before spending: on a terminal it waits for yes, in a script it needs `--yes`, and
`--sample N` makes N images first, writes them beside `--out` and asks again before the rest."""

import os
import pty
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.cli.conftest import GeminiServer, finish_cli, make_zip, read_results, run_cli, start_cli

if TYPE_CHECKING:
    import subprocess

pytestmark = [pytest.mark.e2e]


def _answer(master: int, cwd: Path, log_name: str, question: str, answer: str, *, after: int = 0) -> int:
    """Wait for the `question` (its occurrence after offset `after` of the CLI's stderr) and type `answer`.

    Returns the offset just past the question, to wait for the next one.
    """
    deadline = time.monotonic() + 90
    err = cwd / f"{log_name}.err"
    while (at := err.read_text().find(question, after)) < 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the CLI never asked {question!r}: {err.read_text()[-2000:]}")
        time.sleep(0.05)
    os.write(master, answer.encode() + b"\n")
    return at + len(question)


def _with_terminal(
    args: list[str], cwd: Path, env: dict[str, str], log_name: str
) -> tuple[int, "subprocess.Popen[str]"]:
    """Start the CLI with a pseudo-terminal as its stdin; return the terminal's other end and the process."""
    master, slave = pty.openpty()
    proc = start_cli(args, cwd=cwd, env=env, log_name=log_name, stdin=slave)
    os.close(slave)  # the CLI holds its own copy
    return master, proc


@pytest.mark.timeout(120)
def test_batch_starts_nothing_when_stdin_is_no_terminal_and_yes_is_not_given(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    gemini = start_gemini()
    make_zip(tmp_path / "in.zip", 3)

    run = run_cli(["batch", "in.zip", "--prompt", "ink wash", "--data", "data"], cwd=tmp_path, env=gemini.cli_env())

    assert run.returncode == 2, run.stderr[-2000:]
    assert "Batch ready: ink wash" in run.stderr  # the plan is shown: a dry run
    assert "nothing was started: stdin is not a terminal" in run.stderr and "--yes" in run.stderr
    assert gemini.stats()["requests"] == 0
    assert not (tmp_path / "results.zip").exists()


@pytest.mark.timeout(180)
def test_batch_asks_on_a_terminal_and_starts_only_on_yes(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    gemini = start_gemini()
    make_zip(tmp_path / "in.zip", 3)
    args = ["batch", "in.zip", "--prompt", "ink wash", "--data", "data"]
    question = "Start 3 images for about $"

    master, proc = _with_terminal(args, tmp_path, gemini.cli_env(), "no")
    _answer(master, tmp_path, "no", question, "n")
    said_no = finish_cli(proc, cwd=tmp_path, log_name="no", timeout_s=60)
    os.close(master)
    assert said_no.returncode == 0 and "not started: nothing was queued or charged" in said_no.stderr
    assert gemini.stats()["requests"] == 0

    master, proc = _with_terminal(args, tmp_path, gemini.cli_env(), "yes")
    _answer(master, tmp_path, "yes", question, "y")
    said_yes = finish_cli(proc, cwd=tmp_path, log_name="yes", timeout_s=120)
    os.close(master)
    assert said_yes.returncode == 0, said_yes.stderr[-2000:]
    assert "3/3 (100%)  done 3  failed 0" in said_yes.stderr and "$0.12" in said_yes.stderr  # 3 x $0.039
    assert gemini.stats()["requests"] == 3


@pytest.mark.timeout(120)
def test_ctrl_c_at_the_question_starts_nothing(tmp_path: Path, start_gemini: Callable[..., GeminiServer]) -> None:
    gemini = start_gemini()
    make_zip(tmp_path / "in.zip", 3)
    args = ["batch", "in.zip", "--prompt", "ink", "--data", "data"]
    master, proc = _with_terminal(args, tmp_path, gemini.cli_env(), "c")
    err = tmp_path / "c.err"
    deadline = time.monotonic() + 90
    while "[y/N]" not in err.read_text():
        assert time.monotonic() < deadline, err.read_text()[-2000:]
        time.sleep(0.05)

    os.kill(proc.pid, signal.SIGINT)
    run = finish_cli(proc, cwd=tmp_path, log_name="c", timeout_s=30)

    os.close(master)
    assert run.returncode == 130, run.stderr[-2000:]
    assert "interrupted; nothing was started" in run.stderr
    assert gemini.stats()["requests"] == 0


@pytest.mark.timeout(240)
def test_sample_makes_n_first_then_the_rest_only_when_told_and_nothing_twice(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    gemini = start_gemini()
    n, trial = 6, 2
    make_zip(tmp_path / "in.zip", n)
    args = ["batch", "in.zip", "--prompt", "ink wash", "--data", "data", "--sample", str(trial)]

    master, proc = _with_terminal(args, tmp_path, gemini.cli_env(), "trial")
    at = _answer(master, tmp_path, "trial", "Try 2 of 6 images first", "y")
    _answer(master, tmp_path, "trial", "Start the rest (4 image(s), about $", "n", after=at)
    held = finish_cli(proc, cwd=tmp_path, log_name="trial", timeout_s=120)
    os.close(master)

    assert held.returncode == 0, held.stderr[-2000:]
    samples = sorted((tmp_path / "results-sample").iterdir())
    assert [p.name for p in samples] == ["01_p00000.png", "02_p00001.png"]
    assert held.stdout.split() == [str(p.relative_to(tmp_path)) for p in samples]
    assert "the rest of job" in held.stderr and "is held" in held.stderr
    assert gemini.stats()["requests"] == trial

    rest = run_cli([*args, "--yes"], cwd=tmp_path, env=gemini.cli_env(), timeout_s=120)

    assert rest.returncode == 0, rest.stderr[-2000:]
    assert "resuming job" in rest.stderr and "Start the rest (4 image(s), about $0.16)? yes (--yes)" in rest.stderr
    assert gemini.stats()["requests"] == n  # 2 + 4: the trial's images are part of the batch, not made again
    names, _ = read_results(tmp_path / "results.zip")
    assert sorted(name for name in names if name.endswith(".png")) == [f"img/p{i:05d}.png" for i in range(n)]
