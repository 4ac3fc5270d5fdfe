"""Readiness: named checks that whoever owns a resource registers, run together for `GET /readyz`.

A check is an async callable that answers `OK` or a short fixed code (`"unreachable"`, `"refused"`, …). The report
never carries exception text or anything a check saw (no secrets, no hostnames): an exception counts as `"error"`
and a check slower than its timeout as `"timeout"`. Checks run concurrently, so one hung service costs the probe
one timeout, not the sum of them.

`cached` wraps a check on a remote service so that a storm of probes (several orchestrators, a tight interval)
reaches the service at most once per time-to-live.
"""

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

OK = "ok"
TIMEOUT = "timeout"
ERROR = "error"
DEFAULT_TIMEOUT_S = 2.0  # under the default timeouts of Docker (30 s) and Kubernetes (1 s … per probe, retried)

Check = Callable[[], Awaitable[str]]
_CODE = re.compile(r"[a-z_]{1,32}")


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """The outcome of every check; ready when all of them answered `OK`."""

    checks: Mapping[str, str]

    @property
    def ready(self) -> bool:
        """True when every check answered `OK` (and there is at least one)."""
        return bool(self.checks) and all(code == OK for code in self.checks.values())

    def to_json(self) -> dict[str, object]:
        """Return `{"ready": bool, "checks": {name: code}}`, the body of `/readyz`."""
        return {"ready": self.ready, "checks": dict(self.checks)}


class Readiness:
    """A registry of readiness checks, run together by `report`."""

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Register `check` under `name` (replacing any check of that name).

        Raises:
            ValueError: `name` is not a short lowercase code.
        """
        if not _CODE.fullmatch(name):
            raise ValueError(f"a readiness check needs a short lowercase name, not {name!r}")
        self._checks[name] = check

    def remove(self, name: str) -> None:
        """Forget the check registered under `name`, if any."""
        self._checks.pop(name, None)

    @property
    def names(self) -> tuple[str, ...]:
        """The registered checks' names, in registration order."""
        return tuple(self._checks)

    async def report(self) -> ReadinessReport:
        """Run every check at once, each bounded by the timeout; return their codes."""
        names = list(self._checks)
        codes = await asyncio.gather(*(self._run(name, self._checks[name]) for name in names))
        return ReadinessReport(checks=dict(zip(names, codes, strict=True)))

    async def _run(self, name: str, check: Check) -> str:
        try:
            async with asyncio.timeout(self._timeout_s):
                code = await check()
        except TimeoutError:
            return TIMEOUT
        except Exception:  # a check is a boundary: its failure is a code, its detail goes to the log only
            log.warning("readiness check %s failed", name, exc_info=True)
            return ERROR
        # A check's answer is shown to whoever can reach the port: only short codes pass, never free text.
        return code if _CODE.fullmatch(code) else ERROR


def cached(check: Check, *, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> Check:
    """Return a check that runs `check` at most once per `ttl_s` and shares one run among concurrent callers.

    A run that raises or is cancelled (e.g. the probe's timeout) is not cached, so the next probe tries again.
    """
    last: tuple[float, str] | None = None
    running: asyncio.Task[str] | None = None

    async def run() -> str:
        nonlocal last, running
        if last is not None and clock() - last[0] < ttl_s:
            return last[1]
        if running is None or running.done():
            running = asyncio.ensure_future(check())
            # Its outcome is read by whoever still waits; when every waiter timed out, nobody does (and asyncio
            # would log "exception was never retrieved").
            running.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        task = running
        # A caller's timeout cancels its wait, not the shared run other callers may still await.
        code = await asyncio.shield(task)
        last = (clock(), code)
        return code

    return run


__all__ = ["DEFAULT_TIMEOUT_S", "ERROR", "OK", "TIMEOUT", "Check", "Readiness", "ReadinessReport", "cached"]
