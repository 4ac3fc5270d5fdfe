"""The worker image holds the worker, the contract and storage, pinned to the versions `uv.lock` resolved.

`worker/requirements.txt` is exported from `uv.lock` (`make worker-requirements`); these tests fail when the two
drift, when `worker/Dockerfile` copies anything of the bot or the stand-ins, and when the code the image copies
imports a first-party module it does not copy or a library its requirements do not install.
"""

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dockerfile import arguments, instructions

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "worker" / "Dockerfile"
REQUIREMENTS = ROOT / "worker" / "requirements.txt"
LOCK = ROOT / "uv.lock"
EXPORT_ARGS = ("export", "--frozen", "--no-hashes", "--only-group", "worker", "--no-emit-project", "--quiet")
FIRST_PARTY = ("bot", "worker", "storage", "usertext", "local", "tests", "bench", "scripts")
ENTRY_MODULES = ("worker.__main__", "worker.handler")  # what `python -m worker` runs


def _canonical(name: str) -> str:
    """Normalize a distribution name as PEP 503 does."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked_closure(lock: dict[str, Any], group: str) -> set[tuple[str, str]]:
    """Return (name, version) of every package the root project's dependency `group` installs, per `uv.lock`."""
    packages: list[dict[str, Any]] = lock["package"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for package in packages:
        by_name.setdefault(_canonical(package["name"]), []).append(package)
    root = next(p for p in packages if p.get("source", {}).get("virtual") == ".")
    wanted: list[dict[str, Any]] = list(root["dev-dependencies"][group])
    found: set[tuple[str, str]] = set()
    seen: set[tuple[str, str, str]] = set()
    while wanted:
        dep = wanted.pop()
        candidates = by_name[_canonical(str(dep["name"]))]
        if "version" in dep:  # the lock forked: the dependency names which one
            candidates = [c for c in candidates if c["version"] == dep["version"]]
        for package in candidates:
            name, version = _canonical(str(package["name"])), str(package["version"])
            extras: tuple[str, ...] = tuple(dep.get("extra", ()))
            for extra in ("", *extras):
                if (name, version, extra) in seen:
                    continue
                seen.add((name, version, extra))
                found.add((name, version))
                deps = package.get("dependencies", []) if not extra else package["optional-dependencies"][extra]
                wanted.extend(deps)
    return found


def _pinned(requirements: str) -> set[tuple[str, str]]:
    """Return (name, version) of every `name==version` line of a requirements file."""
    pins: set[tuple[str, str]] = set()
    for line in requirements.splitlines():
        if not line or line[0] in "# ":
            continue
        spec = line.split(";", 1)[0].strip()
        name, _, version = spec.partition("==")
        assert version, f"not pinned: {line!r}"
        pins.add((_canonical(name), version))
    return pins


def test_worker_requirements_pin_exactly_what_uv_lock_resolves_for_the_worker_group() -> None:
    lock = tomllib.loads(LOCK.read_text())

    assert _pinned(REQUIREMENTS.read_text()) == _locked_closure(lock, "worker"), "run `make worker-requirements`"


def _body(requirements: str) -> str:
    """Return a requirements file without its header comment."""
    lines = requirements.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def _uv() -> str | None:
    local = ROOT / ".tools" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


@pytest.mark.skipif(_uv() is None, reason="uv is not installed (make setup puts it in .tools/)")
def test_worker_requirements_are_what_uv_export_writes_from_the_lock() -> None:
    uv = _uv()
    assert uv is not None
    # --frozen reads uv.lock as it is (no resolution, no network); --offline makes sure of the latter.
    exported = subprocess.run(
        [uv, *EXPORT_ARGS, "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"UV_PYTHON_DOWNLOADS": "never", "UV_PYTHON": sys.executable, "PATH": ""},
    )

    # The header names the command (with `-o` in the file's case); the rest must match to the byte.
    assert _body(REQUIREMENTS.read_text()) == _body(exported.stdout), "run `make worker-requirements`"


def _copied_sources(dockerfile: str) -> list[str]:
    """Return the build-context sources of every COPY and ADD (flags and the destination left out)."""
    sources: list[str] = []
    for instruction, rest in instructions(dockerfile):
        if instruction in ("COPY", "ADD"):
            paths = [a for a in arguments(rest) if not a.startswith("--")]
            sources.extend(paths[:-1])
    return sources


def _top(source: str) -> str:
    """Return the first directory of a build-context path (`.` for the whole context)."""
    return (Path(source).parts or (".",))[0]


def forbidden_copies(dockerfile: str) -> list[str]:
    """Return what a Dockerfile copies from outside the worker, the contract and storage."""
    return [s for s in _copied_sources(dockerfile) if _top(s) not in ("worker", "storage", "usertext")]


def test_the_worker_image_copies_only_the_worker_the_contract_and_storage() -> None:
    dockerfile = DOCKERFILE.read_text()

    assert {_top(s) for s in _copied_sources(dockerfile)} == {"worker", "storage", "usertext"}
    assert forbidden_copies(dockerfile) == []


@pytest.mark.parametrize(
    "line", ["COPY local/gemini /app/local/gemini", "COPY --chown=worker bot /app/bot", "ADD . /app", "COPY tests/ x/"]
)
def test_the_copy_check_sees_anything_else_copied(line: str) -> None:
    dockerfile = DOCKERFILE.read_text() + line + "\n"

    assert forbidden_copies(dockerfile) == [line.split()[-2]]


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.exists():
            return path
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> Iterator[str]:
    """Yield every module `path` imports at run time, at module level or inside functions (not TYPE_CHECKING)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (name for child in node.orelse for name in visit(child))
            return
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(path.read_text(), filename=str(path)))


def worker_import_closure() -> tuple[set[str], set[str]]:
    """Return the first-party modules and the third-party top-level names the worker's entry reaches."""
    first_party: set[str] = set()
    third_party: set[str] = set()
    wanted = list(ENTRY_MODULES)
    while wanted:
        module = wanted.pop()
        top = module.split(".")[0]
        if top not in FIRST_PARTY:
            if top not in sys.stdlib_module_names:
                third_party.add(top)
            continue
        path = _module_file(module)
        if path is None or module in first_party:
            continue  # `from pkg import name` where name is not a module
        first_party.add(module)
        parts = module.split(".")
        wanted.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b.c runs a and a.b
        wanted.extend(_imports(path, module))
    return first_party, third_party


def test_the_worker_reaches_neither_the_bot_nor_the_stand_ins() -> None:
    first_party, _ = worker_import_closure()

    assert "worker.handler" in first_party and "storage.s3" in first_party  # the walk follows the imports
    assert {m.split(".")[0] for m in first_party} <= {"worker", "storage", "usertext"}, sorted(first_party)


def test_every_library_the_worker_imports_is_in_its_requirements() -> None:
    _, third_party = worker_import_closure()
    distributions = importlib.metadata.packages_distributions()
    pinned = {name for name, _ in _pinned(REQUIREMENTS.read_text())}

    missing = {top for top in third_party if not {_canonical(d) for d in distributions.get(top, ())} & pinned}

    assert {"runpod", "google", "PIL", "boto3"} <= third_party
    assert not missing, f"the worker imports {sorted(missing)}, which worker/requirements.txt does not install"


@pytest.mark.parametrize("path", [".env", ".env.production", "data/", ".git/", ".venv/", ".tools/", "tests/"])
def test_the_build_context_leaves_out_secrets_data_and_environments(path: str) -> None:
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")
    ]

    assert path in patterns or (path.startswith(".env.") and ".env.*" in patterns)
