"""The CLI's terminal: results on stdout, progress and notes on stderr, a progress meter, and Ctrl-C as an event."""

import asyncio
import contextlib
import dataclasses
import io
import math
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.app.runtime import StopRequestedError
from bot.core.models import Job
from bot.core.outage import Outage
from bot.core.render import delayed_state

if TYPE_CHECKING:
    from datetime import datetime


class Console:
    """Where the CLI talks: results on stdout, progress, notes and questions on stderr (no `print`: ruff T20).

    Answers are read from `inp` (stdin), and only when it is a terminal: a script is never asked anything.
    """

    def __init__(self, out: TextIO, err: TextIO, inp: TextIO | None = None) -> None:
        self.out = out
        self.err = err
        self.inp = inp
        self._progress_open = False
        self._progress_width = 0

    @property
    def can_ask(self) -> bool:
        """Whether someone at a terminal can answer a question (stdin is a terminal)."""
        return self.inp is not None and self.inp.isatty()

    async def ask(self, question: str, stop: asyncio.Event) -> bool:
        """Ask a yes/no question on stderr and wait for the answer on stdin; anything but y/yes is no.

        Raises:
            StopRequestedError: `stop` (Ctrl-C, SIGTERM) was set before an answer came.
        """
        assert self.inp is not None
        self.end_progress()
        self.err.write(f"{question} [y/N] ")
        self.err.flush()
        answer = await read_line(self.inp, stop)
        return answer.strip().lower() in {"y", "yes"}

    def say(self, text: str) -> None:
        """Write a line to stdout."""
        self.end_progress()
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Write a line to stderr."""
        self.end_progress()
        self.err.write(text + "\n")
        self.err.flush()

    def progress(self, text: str, *, tty: bool) -> None:
        """Show a progress line: rewritten in place on a terminal, one line per call otherwise."""
        if tty:
            # One line, redrawn in place: padded over what the longer line before it left.
            self.err.write("\r" + text.ljust(self._progress_width))
            self._progress_width = max(self._progress_width, len(text))
            self._progress_open = True
        else:
            self.err.write(text + "\n")
        self.err.flush()

    def delayed(self, outage: Outage) -> None:
        """Say that the job waits through an outage of the image workers or of Gemini (once per outage)."""
        self.note(delayed_state(local_hhmm(outage.since), outage.service))

    def end_progress(self) -> None:
        """Finish an in-place progress line, so what follows starts on a line of its own."""
        if self._progress_open:
            self.err.write("\n")
            self.err.flush()
            self._progress_open = False
            self._progress_width = 0


async def read_line(inp: TextIO, stop: asyncio.Event) -> str:
    """Read one line from `inp` without blocking the event loop, or raise `StopRequestedError` once `stop` is set.

    A terminal in canonical mode hands over whole lines, so once its descriptor is readable `readline` returns at
    once; waiting on the descriptor (not in a thread) leaves nothing blocked behind when Ctrl-C ends the wait.
    """
    try:
        fd = inp.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):  # an in-memory stream (tests): it never blocks
        return inp.readline()
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[bool] = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(True)

    loop.add_reader(fd, on_readable)
    stopped: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((readable, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(fd)
        stopped.cancel()
    if not readable.done():
        raise StopRequestedError
    return inp.readline()


@dataclasses.dataclass(slots=True)
class ProgressMeter:
    """Turns job counts into a progress line: done/failed/total, rate over this run, ETA, cost."""

    started_at: float
    done_at_start: int
    clock: Callable[[], float] = time.monotonic

    def line(self, job: Job, *, failed: int, cost_usd: float, bar: bool = False, relax: str | None = None) -> str:
        """Return the progress line: finished/total, a bar (on a terminal), made, failed, rate, ETA and cost.

        `failed` counts safety blocks too; `cost_usd` is what the images made so far cost. `relax` (where Gemini's
        Batch API is with a relax batch) replaces the rate and the ETA, which Gemini sets, not Peel.
        """
        elapsed = max(1e-6, self.clock() - self.started_at)
        finished = job.ok + job.failed
        rate = max(0, finished - self.done_at_start) / elapsed
        eta = "--" if rate <= 0 else _duration(job.remaining / rate)
        share = finished / max(1, job.total)
        drawn = f"[{_bar(share)}] " if bar else ""
        pace = relax if relax is not None else f"{rate:.1f} img/s  ETA {eta}"
        counts = f"{finished}/{job.total} ({100 * share:.0f}%)  done {job.ok}  failed {failed}"
        return f"{drawn}{counts}  {pace}  ${cost_usd:.2f}"


_BAR_WIDTH = 20


def _bar(share: float) -> str:
    filled = min(_BAR_WIDTH, round(share * _BAR_WIDTH))
    return "#" * filled + "." * (_BAR_WIDTH - filled)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def local_hhmm(moment: "datetime") -> str:
    """Return a time as HH:MM in this machine's time zone (the CLI's user reads it here)."""
    return moment.astimezone().strftime("%H:%M")


def peak_rss_bytes() -> int | None:
    """Return this process's peak resident set size (Linux `VmHWM`), or None where it cannot be read."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


@contextlib.asynccontextmanager
async def interruptible() -> AsyncIterator[asyncio.Event]:
    """Turn SIGINT and SIGTERM into an event (and restore the default handling afterwards)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


__all__ = ["Console", "ProgressMeter", "interruptible", "local_hhmm", "peak_rss_bytes", "read_line"]
