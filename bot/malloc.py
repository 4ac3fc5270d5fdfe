"""Process-wide allocator tuning for the bot's long-lived process."""

import ctypes
import os
import sys

_M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas, as `MALLOC_ARENA_MAX=2` would; return whether it applied.

    glibc gives threads their own arenas (up to 8 per core) and keeps what each one grew to; the ZIP writer's
    threads, aiosqlite's and the executor's each grew one, ~4 MB of the bot's peak at the end of a 10,000-item
    batch. It must run before those threads start. An environment that sets MALLOC_ARENA_MAX itself, or a libc
    that is not glibc, is left alone.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
