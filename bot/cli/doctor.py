"""`python -m bot doctor`: check every configured service and print one line per check.

`✓` passed, `!` works but deserves a look, `✗` failed, followed by how to fix it (the setting to change). Exit
status: 0 when nothing failed, 1 when a check failed, 2 for bad settings (as `python -m bot`). Secrets are never
printed: the checks name settings, not their values.
"""

import argparse
import asyncio
import logging
import sys
from typing import TextIO

from pydantic import ValidationError

from bot.app.doctor import SELFTEST_TIMEOUT_S, Check, DiscordChecks, run_doctor, summary
from bot.settings import BotSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse `python -m bot doctor`'s flags."""
    parser = argparse.ArgumentParser(
        prog="python -m bot doctor", description="Check Peel's configuration and every service it uses."
    )
    parser.add_argument(
        "--selftest-timeout",
        type=float,
        default=SELFTEST_TIMEOUT_S,
        help=f"seconds to wait for a worker to run the self-test job (default {SELFTEST_TIMEOUT_S:.0f})",
    )
    parser.add_argument("--log-level", default="CRITICAL", help="log level of the services' own logs")
    return parser.parse_args(argv)


def render(check: Check) -> str:
    """Return a check's line (and its fix on the next line when it failed)."""
    mark = "✗" if not check.ok else "!" if check.warning else "✓"
    line = f"{mark} {check.name}: {check.detail}"
    return f"{line}\n    fix: {check.fix}" if not check.ok and check.fix else line


def print_report(checks: list[Check], out: TextIO) -> None:
    """Print every check, then the count."""
    for check in checks:
        out.write(render(check) + "\n")
    ok, bad = summary(checks)
    out.write(f"\n{ok} passed, {bad} failed\n")
    out.flush()


def main(argv: list[str], *, discord: DiscordChecks | None = None) -> int:
    """Run doctor; return the process's exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        settings = BotSettings()
    except ValidationError as exc:
        sys.stderr.write(f"Peel: bad settings: {exc.error_count()} problem(s)\n")
        for error in exc.errors():
            sys.stderr.write(f"  {'.'.join(str(p) for p in error['loc']).upper()}: {error['msg']}\n")
        return EXIT_BAD_SETTINGS
    sys.stdout.write("Peel doctor: checking every service Peel uses (the embedded ones where settings are unset)\n")
    sys.stdout.flush()
    checks = asyncio.run(run_doctor(settings, discord=discord, selftest_timeout_s=args.selftest_timeout))
    print_report(checks, sys.stdout)
    return EXIT_FAILED if any(not c.ok for c in checks) else EXIT_OK


__all__ = ["main", "render"]
