"""The CLI's terminal: results on stdout, progress and notes on stderr, a progress meter, and Ctrl-C as an event."""

import asyncio
import contextlib
import dataclasses
import math
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.core.models import Job
from bot.core.outage import Outage
from bot.core.render import delayed_state

if TYPE_CHECKING:
    from datetime import datetime


class Console:
    """Where the CLI talks: results on stdout, progress and notes on stderr (no `print`: ruff T20)."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self._progress_open = False

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
            self.err.write("\r" + text.ljust(78))
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


@dataclasses.dataclass(slots=True)
class ProgressMeter:
    """Turns job counts into a progress line: done/failed/total, rate over this run, ETA."""

    total: int
    started_at: float
    done_at_start: int
    clock: Callable[[], float] = time.monotonic

    def line(self, job: Job) -> str:
        """Return the progress line for the job as it is now."""
        elapsed = max(1e-6, self.clock() - self.started_at)
        made_now = max(0, job.ok + job.failed - self.done_at_start)
        rate = made_now / elapsed
        remaining = job.remaining
        eta = "--" if rate <= 0 else _duration(remaining / rate)
        pct = 100.0 * (job.ok + job.failed) / max(1, job.total)
        return (
            f"{job.ok + job.failed}/{job.total} ({pct:.0f}%)  done {job.ok}  failed {job.failed}  "
            f"{rate:.1f} img/s  ETA {eta}"
        )


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


__all__ = ["Console", "ProgressMeter", "interruptible", "local_hhmm", "peak_rss_bytes"]
