"""Find the processes a process started, from Linux's /proc: chaos tests kill them from outside, as `kill` would."""

from pathlib import Path


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return None
    # `pid (comm) state ppid …`; comm may hold spaces and parentheses, so split after its last ')'
    return int(stat.rsplit(")", 1)[1].split()[1])


def _argv_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def descendants_running(ancestor: int, *argv_parts: str) -> list[tuple[int, list[str]]]:
    """Return (pid, argv) of each live descendant of `ancestor` whose argv holds every one of `argv_parts`."""
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    parents = {pid: _parent_of(pid) for pid in pids}
    found = []
    for pid in parents:
        up = parents.get(pid)
        while up is not None and up != ancestor:
            up = parents.get(up)
        if up == ancestor:
            argv = _argv_of(pid)
            if all(part in argv for part in argv_parts):
                found.append((pid, argv))
    return found
