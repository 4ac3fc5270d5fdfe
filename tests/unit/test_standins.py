"""The local stand-ins (`local/`) stay outside the product: only the embedded wiring reaches them, and lazily.

The product (`bot/`, `worker/`, `storage/`) never imports `local` at module level; the worker and storage never
import it at all. The two places that start the stand-ins when a setting is left unset import them inside a
function (or under `TYPE_CHECKING`), so a bot configured for the real services never loads them. Inside `local/`
the modules import one another without cycles.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("bot", "worker", "storage")
# The embedded wiring: the only product modules that may import a stand-in, and only where it is started.
LAZY_IMPORTERS = {ROOT / "bot" / "app" / "embedded.py", ROOT / "bot" / "__main__.py"}


def product_files() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """Return each absolute import's target module names with whether it runs when the module is imported."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, *, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, eager) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, eager))
                found.extend((f"{child.module}.{alias.name}", eager) for alias in child.names)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, eager=False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), eager=False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), eager=eager)
            else:
                visit(child, eager=eager)

    visit(tree, eager=True)
    return found


def is_local(name: str) -> bool:
    return name == "local" or name.startswith("local.")


def test_lazy_importers_exist_when_listed() -> None:
    missing = [str(p.relative_to(ROOT)) for p in LAZY_IMPORTERS if not p.exists()]
    assert not missing, f"listed files that do not exist: {missing}"


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_product_module_imports_no_stand_in_when_imported(path: Path) -> None:
    found = [(name, eager) for name, eager in imports(ast.parse(path.read_text())) if is_local(name)]
    if path in LAZY_IMPORTERS:
        eager = sorted({name for name, is_eager in found if is_eager})
        assert not eager, f"{path.relative_to(ROOT)} imports {eager} at module level; import it where it starts"
    else:
        assert not found, f"{path.relative_to(ROOT)} imports the stand-ins {sorted({n for n, _ in found})}"


def test_lazy_importers_do_start_the_stand_ins_when_checked() -> None:
    # the exception above is not a dead letter: each listed module does reach the stand-ins
    for path in LAZY_IMPORTERS:
        assert any(is_local(name) for name, _ in imports(ast.parse(path.read_text()))), path


def local_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (ROOT / "local").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {target for target, _ in imports(ast.parse(path.read_text())) if target in modules}
        # `from local.discord import actions` imports the submodule, not the package's own __init__
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)} - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            if cycle := walk(target, [*path, node]):
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := walk(start, []):
            return cycle
    return None


def test_stand_ins_import_one_another_without_cycles_when_checked() -> None:
    graph = local_graph()
    assert {"local.discord.server", "local.runpod.endpoint", "local.gemini.server"} <= graph.keys()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_cycle_finder_finds_a_cycle_when_there_is_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
