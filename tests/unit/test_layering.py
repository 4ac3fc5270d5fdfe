"""Pure modules import no I/O library (DESIGN.md, STYLE.md §1)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("discord", "aiohttp", "aiosqlite", "boto3", "botocore", "google", "runpod", "sqlite3", "requests")
PURE = [
    *sorted((ROOT / "bot" / "core").rglob("*.py")),
    ROOT / "worker" / "contract.py",
    ROOT / "worker" / "errors.py",
    ROOT / "worker" / "generation.py",
    ROOT / "worker" / "catalogue.py",
    ROOT / "storage" / "imageformat.py",
    ROOT / "storage" / "keys.py",
    ROOT / "storage" / "links.py",
    ROOT / "storage" / "errors.py",
    *sorted((ROOT / "usertext").rglob("*.py")),
    ROOT / "bot" / "web" / "headers.py",
]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", [p for p in PURE if p.exists()], ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io_library_when_checked(path: Path) -> None:
    bad = imported_roots(path) & set(FORBIDDEN)
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
