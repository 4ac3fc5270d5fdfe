"""Headless use of Peel: `python -m bot batch INPUT.zip --prompt "…"`, `imagine "prompt"` and `usage`.

Both run through the same `Runtime` as the Discord bot (ledger under `--data`, file store under `--data/store`,
embedded back ends unless RunPod/Gemini/storage settings are in the environment); only the front end differs.

`batch` plans the ZIP through the same `BatchService` as `/batch` (so both write the same notes and the same
manifest), prints the plan and asks before spending (`--yes` answers; with stdin not a terminal and no `--yes` it
starts nothing and exits 2), optionally runs a trial first (`--sample N`, then "Start the rest?"), runs the dispatcher
until the job is finished and writes the batch's ZIP with both manifests. The
job's idempotency key is a hash of the input ZIP's content, the prompt and the parameters, so the same command
started again after Ctrl-C, a crash or SIGKILL finds the same job in the ledger and goes on with it: nothing that
was made is made again. Exit status: 0 when every item was made (or, as answered, nothing was started or the rest
of a trial is held), 1 when some failed (the ZIP is still written), 2 for bad usage or input (stdin not a
terminal and no `--yes` included), 3 when the ledger is damaged (the message says how to restore it), 4 when RunPod
stayed unreachable, or Gemini did not answer the workers, for `--give-up-after` seconds (30 by default: the CLI gives up
sooner than the bot; the job is kept and the same command resumes it), 5 when RunPod refuses the key or endpoint
id (the message names the fix), 130 when interrupted. Meanwhile a `delayed: image workers unreachable since HH:MM`
(or `delayed: Gemini not answering since HH:MM`) line says so.

`imagine` goes through `GenerationService`, as `/imagine` does: it makes a grid job (4 images unless `--n`) and
writes the images and a 2x2 grid into a directory.

`usage` prints what was spent per server and per user over whole days (`--since`, `--until`, in
`BUDGET_TIMEZONE`), as `/usage` does, and writes its CSV with `--csv PATH`; it opens the ledger alone.

The package: `args` (the parser, the prompt with its flags, the settings, the exit statuses), `console` (output,
progress, Ctrl-C), `batch`, `imagine` and `usage` (the runners); `main` here ties them together.
"""

import asyncio
import logging
import sys

from bot.app import LedgerDamagedError, LedgerTooNewError
from bot.app.runtime import WorkersMisconfiguredError, WorkersUnreachableError
from bot.cli.args import (
    EXIT_INTERRUPTED,
    EXIT_LEDGER_DAMAGED,
    EXIT_MISCONFIGURED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    build_parser,
    make_settings,
)
from bot.cli.batch import run_batch
from bot.cli.console import Console, local_hhmm
from bot.cli.imagine import run_imagine
from bot.cli.usage import run_usage


def configure_logging(verbosity: int) -> None:
    """Log warnings (or more with -v) to stderr."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbosity < 2:
        for noisy in ("aiohttp.access", "local.runpod.worker"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def unreachable_message(exc: WorkersUnreachableError, give_up_after_s: float) -> str:
    """Return what the CLI says when it gave up waiting through an outage: which service, since when, what to check."""
    since, kept = local_hhmm(exc.since), "The job is kept: run the same command again once"
    if exc.service == "gemini":
        return (
            f"error: Gemini has not answered the image workers since {since} ({exc.reason}); gave up after"
            f" {give_up_after_s:g}s. Check GEMINI_BASE_URL (unset: Google's API) and that the workers reach it over"
            f" the network. {kept} Gemini answers."
        )
    return (
        f"error: the image workers (RunPod) have been unreachable since {since} ({exc.reason}); gave up after"
        f" {give_up_after_s:g}s. {kept} RunPod answers."
    )


def main(argv: list[str]) -> int:
    """Run a headless command (`batch`, `imagine` or `usage`); return the process's exit status."""
    console = Console(sys.stdout, sys.stderr, sys.stdin)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 for --help
        return int(exc.code or 0)
    args.argv = argv
    configure_logging(args.verbose)
    try:
        settings = make_settings(args)
        command = {"batch": run_batch, "imagine": run_imagine, "usage": run_usage}[args.command]
        return asyncio.run(command(args, settings, console))
    except UsageError as exc:
        console.note(f"error: {exc}")
        return EXIT_USAGE
    except (LedgerDamagedError, LedgerTooNewError) as exc:
        console.note(f"error: {exc.user_message}")
        return EXIT_LEDGER_DAMAGED
    except WorkersUnreachableError as exc:
        console.note(unreachable_message(exc, args.give_up_after))
        return EXIT_UNREACHABLE
    except WorkersMisconfiguredError as exc:
        console.note(f"error: {exc.detail}. Fix: {exc.fix}.")
        return EXIT_MISCONFIGURED
    except KeyboardInterrupt:
        console.note("interrupted")
        return EXIT_INTERRUPTED


__all__ = ["configure_logging", "main"]
