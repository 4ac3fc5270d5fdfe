"""Write `.env.example` from the settings classes, so that every setting is listed with its default and its help.

    python scripts/env_example.py           # write .env.example (`make env-example`)
    python scripts/env_example.py --check   # exit 1 when .env.example is not what this would write

Each setting is a help line (its `Field(description=...)`) and `# NAME=default`, grouped by the process that reads
it. A field without a description stops the generator: a setting nobody can understand is not written down.
Section headers inside a class are the first line of each comment block that follows a blank line in its source.
"""

import argparse
import inspect
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's packages are importable
    sys.path.insert(0, str(ROOT))

from bot.settings import BotSettings  # noqa: E402
from storage.intake import IntakeSettings  # noqa: E402
from storage.s3settings import S3Settings  # noqa: E402
from worker.gemini import GeminiSettings  # noqa: E402
from worker.settings import WorkerSettings  # noqa: E402

OUTPUT = ROOT / ".env.example"

HEADER = """\
# Peel's settings, every one with its default and one line of help. Generated from the settings classes by
# `make env-example` (scripts/env_example.py): edit the classes, not this file.
#
# Copy it to .env and uncomment only what you set. A setting left unset keeps its default, and a service left
# unconfigured (Discord, RunPod, Gemini, S3) is replaced by Peel's embedded local stand-in. Lists and maps are
# JSON: ALLOWED_GUILD_IDS=[123456789012345678]. docs/deploy.md walks through a deployment step by step.
"""


@dataclass(frozen=True, slots=True)
class Section:
    """One group of settings in the file: who reads them, and from which classes."""

    title: str
    note: str
    classes: tuple[type[BaseSettings], ...]


SECTIONS: tuple[Section, ...] = (
    Section(
        "Bot",
        "Read by `python -m bot` (and its doctor, imagine and batch commands) from the environment or .env.",
        (BotSettings,),
    ),
    Section(
        "Storage credentials",
        "Read by the bot and by the worker when STORAGE_URL is s3://... (`python -m bot` copies them from .env into "
        "its environment, so the embedded workers get them too). Values in the URL's query "
        "(?endpoint=...&region=...) win.",
        (S3Settings,),
    ),
    Section(
        "Batch ZIP intake",
        "Read by `python -m bot` (and `batch`): what one /batch ZIP may hold (from the environment or .env).",
        (IntakeSettings,),
    ),
    Section(
        "Worker",
        "Read by `python -m worker`: set these (and STORAGE_URL, the storage credentials) on the RunPod endpoint. "
        "The bot's local endpoint passes its own STORAGE_*, GEMINI_* and WORKER_* variables on to its workers.",
        (WorkerSettings, GeminiSettings),
    ),
)

# Settings classes no deployed process builds, so their variables would do nothing; the test keeps this honest.
NOT_READ: dict[str, str] = {}

_FIELD_LINE = re.compile(r"^    (\w+)\s*:")
_COMMENT_LINE = re.compile(r"^    #\s?(.*)$")


def env_name(settings: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """Return the variable a field is read from: its first alias, else the class's prefix and its name."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        if isinstance(first, str):
            return first.upper()
    if isinstance(alias, str):
        return alias.upper()
    return (str(settings.model_config.get("env_prefix", "")) + name).upper()


def default_text(field: FieldInfo) -> str:
    """Return the default as the variable's value: blank for none and for secrets, JSON for lists and maps."""
    if field.is_required():
        return ""
    value = field.get_default(call_default_factory=True)
    if value is None or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict | tuple):
        return json.dumps(value)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def section_headers(settings: type[BaseSettings]) -> dict[str, str]:
    """Map a field to the header comment above it: a comment block's first line after a blank line."""
    headers: dict[str, str] = {}
    pending: str | None = None
    previous_blank = False
    for line in inspect.getsource(settings).splitlines():
        comment = _COMMENT_LINE.match(line)
        if comment and previous_blank:
            pending = comment.group(1).strip()
        elif (field := _FIELD_LINE.match(line)) and field.group(1) in settings.model_fields:
            if pending is not None:
                headers[field.group(1)] = pending
            pending = None
        previous_blank = not line.strip()
    return headers


def undescribed(settings: type[BaseSettings]) -> list[str]:
    """Return the names of the fields of `settings` that have no description."""
    return [name for name, field in settings.model_fields.items() if not (field.description or "").strip()]


def setting_lines(settings: type[BaseSettings]) -> Iterator[str]:
    """Yield the lines of one class's settings: a header where a group starts, then help and variable."""
    missing = undescribed(settings)
    if missing:
        raise ValueError(f"{settings.__name__} fields without a description: {', '.join(missing)}")
    headers = section_headers(settings)
    for name, field in settings.model_fields.items():
        if name in headers:
            yield ""
            yield f"# -- {headers[name]}"
        yield f"# {field.description}"
        yield f"# {env_name(settings, name, field)}={default_text(field)}"


def render() -> str:
    """Return the text `.env.example` should hold."""
    lines = HEADER.splitlines()
    for section in SECTIONS:
        lines += ["", "", f"# ==== {section.title} ".ljust(117, "="), *_wrap(section.note)]
        for settings in section.classes:
            lines += setting_lines(settings)
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 117) -> list[str]:
    lines: list[str] = []
    current = "#"
    for word in text.split():
        if len(current) + 1 + len(word) > width:
            lines.append(current)
            current = "#"
        current += " " + word
    return [*lines, current]


def main(argv: list[str] | None = None) -> int:
    """Write `.env.example`, or with `--check` tell whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if .env.example differs; write nothing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            sys.stderr.write(".env.example is out of date: run `make env-example`\n")
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
