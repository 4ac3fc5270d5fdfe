"""Read a Dockerfile's instructions (enough of the syntax for Peel's two images: continuations, comments)."""

import json
import shlex
from collections.abc import Iterator


def instructions(dockerfile: str) -> Iterator[tuple[str, str]]:
    """Yield (INSTRUCTION, the rest of it) for each instruction, continuation lines joined and comments left out."""
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        words = (pending + line).split(None, 1)
        pending = ""
        yield words[0].upper(), words[1] if len(words) > 1 else ""


def arguments(rest: str) -> list[str]:
    """Split an instruction's arguments: the JSON (exec) form, else shell words."""
    if rest.startswith("["):
        parsed = json.loads(rest)
        assert isinstance(parsed, list)
        return [str(word) for word in parsed]
    return shlex.split(rest)


def env(dockerfile: str, *, stage: int = -1) -> dict[str, str]:
    """Return the `ENV` values of one build stage (the last by default)."""
    stages: list[dict[str, str]] = []
    for instruction, rest in instructions(dockerfile):
        if instruction == "FROM":
            stages.append({})
        elif instruction == "ENV":
            for word in shlex.split(rest):
                name, _, value = word.partition("=")
                stages[-1][name] = value
    return stages[stage]


def healthcheck_command(dockerfile: str) -> list[str]:
    """Return the command of the (last) `HEALTHCHECK … CMD …`."""
    found = [rest for name, rest in instructions(dockerfile) if name == "HEALTHCHECK"]
    assert found, "the Dockerfile has no HEALTHCHECK"
    _options, _, command = found[-1].partition("CMD ")
    return arguments(command.strip())
