"""A stand-in's child processes end with it: the kernel's parent-death signal, set between fork and exec."""

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import cast

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # The process's own symbols include libc's (no `find_library`, which runs ldconfig in a subprocess).
        return cast("Callable[..., int]", ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):
        return None


def die_with_parent() -> Callable[[], None] | None:
    """Return a `preexec_fn` that makes the child get SIGKILL when this process dies (Linux), else None.

    A child in its own session outlives a parent that is SIGKILLed (or crashes) as an orphan: a worker would go on
    calling Gemini for a chunk nobody will collect, and a local Gemini server would keep its port. The kernel's
    parent-death signal (prctl(2) `PR_SET_PDEATHSIG`) ends it with its parent; libc is loaded here, before the fork,
    so the child only makes the system call.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between the fork and the prctl
            os._exit(1)

    return preexec
