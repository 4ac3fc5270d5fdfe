"""The repository carries its own design: no file refers to documents outside it."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", ".tools", "data", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".sql", ".json", ".js", ".html", ".css", ".sh", ".example", ""}
# The founding plan's files and the folder beside the repository they lived in (spelled so this file does not match).
OUTSIDE = re.compile(
    "|".join([r"\.\./" + "shared", "/" + "work/", r"\b" + "DESIGN" + r"\.md", r"\b" + "STYLE" + r"\.md"])
)


def text_files() -> list[Path]:
    """The repository's own text files: what git tracks (not what a run left behind), else a walk of the tree."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode == 0:
        candidates = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    else:
        candidates = [p for p in ROOT.rglob("*") if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    return [
        path
        for path in candidates
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in {"Makefile", "Dockerfile"})
    ]


def test_no_file_refers_to_documents_outside_the_repository_when_scanned() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, f"references to documents outside the repository: {hits}"
