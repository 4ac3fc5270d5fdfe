"""The module map of docs/architecture.md holds: every import goes where its part may go, pure parts do no I/O.

The map is read from the document itself (the table between `<!-- module-map -->` markers), so the design and the
check cannot drift apart. A listed module that does not exist fails, as does a module no part holds.
"""

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
FIRST_PARTY = ("bot", "worker", "storage", "usertext", "local")
IO_LIBRARIES = frozenset(
    {"discord", "aiohttp", "aiosqlite", "boto3", "botocore", "google", "runpod", "sqlite3", "requests"}
)


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    modules: tuple[str, ...]
    may_import: frozenset[str]
    pure: bool


def parse_map(text: str) -> dict[str, Part]:
    block = re.search(r"<!-- module-map -->(.*?)<!-- /module-map -->", text, re.S)
    assert block, "docs/architecture.md has no <!-- module-map --> table"
    parts: dict[str, Part] = {}
    for line in block.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("part", "") or set(cells[0]) <= {"-"}:
            continue
        name, modules, may_import, pure = cells
        parts[name] = Part(
            name=name,
            modules=tuple(re.findall(r"`([^`]+)`", modules)),
            may_import=frozenset(may_import.split()),
            pure=pure == "yes",
        )
    return parts


@cache
def module_map() -> dict[str, Part]:
    return parse_map(DOC.read_text())


def module_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in FIRST_PARTY:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = module_files()


def part_of(module: str) -> Part | None:
    best: tuple[int, Part] | None = None
    for part in module_map().values():
        for prefix in part.modules:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), part)
    return None if best is None else best[1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_at_import(nodes: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Yield the import statements that run when the module is imported (not in functions or TYPE_CHECKING)."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _run_at_import(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody"):
                yield from _run_at_import([c for c in getattr(node, field, []) if isinstance(c, ast.stmt)])
            for handler in getattr(node, "handlers", []):
                yield from _run_at_import(handler.body)


def imports_of(path: Path, *, at_import_only: bool = False) -> Iterator[str]:
    """Yield the absolute names `path` imports (for `from a import b`, `a.b` when that is a module, else `a`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = _run_at_import(tree.body) if at_import_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in MODULES else node.module


def test_map_lists_only_modules_that_exist_when_read_from_the_design() -> None:
    missing = [m for part in module_map().values() for m in part.modules if m not in MODULES]
    assert not missing, f"docs/architecture.md maps modules that do not exist: {missing}"
    unknown = {p for part in module_map().values() for p in part.may_import} - set(module_map())
    assert not unknown, f"docs/architecture.md names parts it does not define: {sorted(unknown)}"


def test_every_first_party_module_belongs_to_a_part_when_mapped() -> None:
    unmapped = [m for m in MODULES if part_of(m) is None]
    assert not unmapped, f"no part of docs/architecture.md holds {unmapped}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_what_its_part_may_when_checked(module: str) -> None:
    part = part_of(module)
    assert part is not None
    bad = []
    for name in imports_of(MODULES[module]):
        root = name.split(".")[0]
        if part.pure and root in IO_LIBRARIES:
            bad.append(f"{name} (an I/O library, in a pure part)")
        if root not in FIRST_PARTY:
            continue
        target = part_of(name)
        if target is None or (target.name != part.name and target.name not in part.may_import):
            bad.append(f"{name} (part {target.name if target else '?'})")
    assert not bad, f"{module} (part {part.name}) may not import {bad}"


def test_first_party_modules_import_no_cycle_when_loaded() -> None:
    graph = {
        m: {n for n in imports_of(path, at_import_only=True) if n in MODULES and n != m} for m, path in MODULES.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                on_stack.discard(w)
                component.append(w)
            on_stack.discard(v)
            if component:
                cycles.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            strongconnect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_map_parser_reads_parts_and_rules_when_given_a_table() -> None:
    text = """<!-- module-map -->
| part | modules | may import | pure |
|---|---|---|---|
| core | `bot.core` | contract usertext | yes |
| app | `bot.app` `bot.x` | core | |
<!-- /module-map -->"""
    parts = parse_map(text)
    assert parts["core"] == Part("core", ("bot.core",), frozenset({"contract", "usertext"}), True)
    assert parts["app"].modules == ("bot.app", "bot.x") and not parts["app"].pure
