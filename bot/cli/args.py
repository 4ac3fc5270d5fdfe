"""The CLI's arguments: the parser, the prompt with its flags, the settings they override, and the exit statuses."""

import argparse
import dataclasses
from pathlib import Path

from pydantic import ValidationError

from bot.core.models import JobParams, UserId
from bot.core.params import ParsedPrompt, PromptParams, parse_prompt
from bot.core.permute import PermutationError, expand
from bot.settings import BotSettings

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_LEDGER_DAMAGED = 3  # damaged, or written by a newer Peel
EXIT_UNREACHABLE = 4  # RunPod or Gemini stayed unreachable for --give-up-after seconds; the job is kept
EXIT_MISCONFIGURED = 5  # RunPod refused the key or endpoint id (RUNPOD_API_KEY, RUNPOD_ENDPOINT_ID)
EXIT_INTERRUPTED = 130

CLI_OWNER = UserId(0)  # the CLI's jobs belong to no Discord user


EXIT_STATUSES = """exit status:
  0  every image was made, or, as answered, nothing started or the rest of a trial held
  1  some failed (the results are still written)
  2  bad usage or input (stdin not a terminal and no --yes: nothing is started)
  3  the ledger is damaged or newer than this Peel
  4  RunPod unreachable, or Gemini not answering, for --give-up-after seconds (the job is kept: run the same
     command again)
  5  RunPod refused RUNPOD_API_KEY or RUNPOD_ENDPOINT_ID (the message names the fix)
  130 interrupted"""


class UsageError(Exception):
    """Bad arguments or input; the message is shown as is and the exit status is 2."""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m bot batch|imagine|usage`."""
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Peel without Discord.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="flash, pro, flash3 or a full Gemini model name")
        p.add_argument("--ar", help="aspect ratio, e.g. 16:9")
        p.add_argument("--size", help="image size: 512, 1K, 2K or 4K")
        p.add_argument("--seed", help="seed base")
        p.add_argument("--repeat", help="run each prompt N times, each with its own seed (1 to 40)")
        p.add_argument("--data", type=Path, default=None, help="data directory (ledger, store; default ./data)")
        p.add_argument("--concurrency", type=int, default=None, help="Gemini calls in flight (GEMINI_CONCURRENCY)")
        p.add_argument("--workers", type=int, default=None, help="embedded RunPod workers (LOCAL_WORKERS)")
        p.add_argument("--poll-interval", type=float, default=None, help="seconds between RunPod polls")
        p.add_argument(
            "--give-up-after",
            type=float,
            default=30.0,
            metavar="SECONDS",
            help="exit (status 4) when RunPod or Gemini stays unreachable this long (default 30; the job is kept)",
        )
        p.add_argument("--json", action="store_true", help="end with a JSON summary line on stdout")
        p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")

    batch = sub.add_parser("batch", help="run a prompt, or a prompts.csv or captions, over a ZIP")
    batch.add_argument("input", type=Path, help="the ZIP of input images")
    batch.add_argument(
        "--prompt",
        default="",
        help="the prompt, or a template with {prompt} {name} {folder}; may carry --ar/--seed/--no/--model/--size; "
        "optional when the ZIP has a prompts.csv / prompts.jsonl or .txt captions",
    )
    batch.add_argument("--out", type=Path, default=Path("results.zip"), help="where the results ZIP goes")
    batch.add_argument(
        "--ref", type=Path, action="append", default=[], help="a reference image given to every item (repeatable)"
    )
    speed = batch.add_mutually_exclusive_group()
    speed.add_argument(
        "--relax",
        dest="relax",
        action="store_true",
        default=None,
        help="relax mode: Gemini's Batch API at half the price, usually within hours, at most 24 h",
    )
    speed.add_argument(
        "--fast", dest="relax", action="store_false", help="fast mode (the default unless BATCH_DEFAULT_SPEED=relax)"
    )
    batch.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines (no TTY)")
    batch.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="start without asking (needed when stdin is not a terminal: a script never spends unasked)",
    )
    batch.add_argument(
        "--sample",
        type=int,
        nargs="?",
        const=0,
        default=None,
        metavar="N",
        help="make N images first (alone: BATCH_SAMPLE_SIZE), write them beside --out, then ask before the rest",
    )
    common(batch)

    imagine = sub.add_parser("imagine", help="make a grid of images from a prompt")
    imagine.add_argument("prompt", help="the prompt; may carry --ar/--seed/--no/--model/--size/--n")
    imagine.add_argument("--ref", type=Path, action="append", default=[], help="a reference image (repeatable)")
    imagine.add_argument("--n", type=int, default=None, help="how many images: 1, 2 or 4 (default 4)")
    imagine.add_argument("--out", type=Path, default=Path("peel-imagine"), help="the directory for the images")
    common(imagine)

    usage = sub.add_parser("usage", help="what Peel cost per server and per user (days in BUDGET_TIMEZONE)")
    usage.add_argument("--since", metavar="YYYY-MM-DD", help="the first day (default: the 1st of --until's month)")
    usage.add_argument("--until", metavar="YYYY-MM-DD", help="the last day, included (default: today)")
    usage.add_argument("--csv", type=Path, default=None, metavar="PATH", help="also write every row as CSV")
    usage.add_argument("--data", type=Path, default=None, help="data directory (the ledger; default ./data)")
    usage.add_argument("--json", action="store_true", help="end with a JSON summary line on stdout")
    usage.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    return parser


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """The prompt as the job gets it: the model's text and the parameters, CLI flags over inline ones."""

    parsed: ParsedPrompt  # the first `{a, b}` expansion's, when the prompt holds permutations
    params: PromptParams
    # The flags alone: they win over every expansion's inline parameters.
    flags: PromptParams = dataclasses.field(default_factory=PromptParams)
    expansions: int = 1  # how many prompts the `{a, b}` permutations make

    @property
    def text(self) -> str:
        """The text sent to the model (`--no` words rewritten into it)."""
        return self.parsed.model_prompt()

    def job_params(self, default_model: str, *, n: int = 1) -> JobParams:
        """Return the job's parameters."""
        return JobParams(
            model=self.params.model or default_model,
            aspect_ratio=self.params.aspect_ratio,
            image_size=self.params.image_size,
            seed=self.params.seed,
            n=n,
        )


MAX_CHECKED_EXPANSIONS = 1000  # the most `max_prompts_per_request` may be: past it no setting would take the prompt


def parse_job_prompt(prompt: str, args: argparse.Namespace, *, allow_empty: bool = False) -> Prompt:
    """Parse the prompt's inline parameters, then the flags (which win), with every problem reported at once.

    `allow_empty`: a prompt with no text is no error (a batch whose ZIP carries its prompts; the plan checks it).

    Raises:
        UsageError: the prompt or a flag is malformed.
    """
    try:  # every expansion is checked (each parsed on its own, `--ar {1:1, 16:9}` too); the service caps them
        texts = expand(prompt, cap=MAX_CHECKED_EXPANSIONS, keep_escapes=True)
    except PermutationError as exc:
        raise UsageError(str(exc)) from exc
    parsed = parse_prompt(prompt) if len(texts) == 1 else parse_prompt(texts[0])
    inline_errors = parsed.errors if len(texts) == 1 else tuple(e for t in texts for e in parse_prompt(t).errors)
    names = ("model", "ar", "size", "seed", "repeat")
    flags = [f"--{name} {value}" for name in names if (value := getattr(args, name, None))]
    if getattr(args, "n", None) is not None:
        flags.append(f"--n {args.n}")
    flag_params = PromptParams()
    errors = list(dict.fromkeys(e for e in inline_errors if not (allow_empty and "prompt is empty" in e)))
    if flags:
        # The flags go through the same parser, so they are checked (and ratios snapped) exactly like inline ones.
        parsed_flags = parse_prompt("flags " + " ".join(flags))
        errors += [e for e in parsed_flags.errors if "prompt is empty" not in e]
        flag_params = parsed_flags.params
    if errors:
        raise UsageError("; ".join(errors))
    return Prompt(
        parsed=parsed, params=flag_params.merged_over(parsed.params), flags=flag_params, expansions=len(texts)
    )


def make_settings(args: argparse.Namespace) -> BotSettings:
    """Build the settings from the environment with the command's flags over them.

    Raises:
        UsageError: a setting or flag is invalid.
    """
    overrides: dict[str, object] = {}
    if args.data is not None:
        overrides["data_dir"] = args.data
    if getattr(args, "concurrency", None) is not None:  # `usage` runs no job: it has none of these flags
        overrides["gemini_concurrency"] = args.concurrency
    if getattr(args, "workers", None) is not None:
        overrides["local_workers"] = args.workers
    if getattr(args, "poll_interval", None) is not None:
        overrides["poll_interval_s"] = args.poll_interval
    try:
        settings = BotSettings(**overrides)  # type: ignore[arg-type]  # pydantic validates the values
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid settings: {problems}") from exc
    if impossible := settings.deployment_problems(serves_users=False):
        raise UsageError("this configuration cannot work: " + "; ".join(str(p) for p in impossible))
    return settings


__all__ = [
    "CLI_OWNER",
    "EXIT_INTERRUPTED",
    "EXIT_LEDGER_DAMAGED",
    "EXIT_MISCONFIGURED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_STATUSES",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Prompt",
    "UsageError",
    "build_parser",
    "make_settings",
    "parse_job_prompt",
]
