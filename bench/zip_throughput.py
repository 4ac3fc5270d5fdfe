"""Throughput and peak memory of `write_zip` (file store to file store) against a plain copy of the same bytes.

For each count (default 1,000 and 5,000) it writes that many random `--size-mb` MB "images" into a temporary
file store once and flushes them to disk. Then, `--repeat` times in turn: a plain copy of all of them into one
file with `cat` and with a 1 MiB `shutil.copyfileobj` (each followed by fsync, as `FileStore.put` does), and
`write_zip` of all of them into a ZIP in another file store on the same disk. The ZIP runs in a child process
of its own, so its peak RSS (VmHWM) belongs to that run alone. `ratio` is the fastest plain copy's time (of
either kind) over the fastest ZIP's (1.0: as fast as copying; this VM's disk is noisy, hence the repeats).
The last line holds the figures as key=value pairs.
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `make bench` runs `python bench/<name>.py`, which puts bench/ rather than the repository on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.file import FileStore
from storage.zipwriter import ZipEntry, write_zip

MB = 1000 * 1000
MIB = 1024 * 1024


def key_of(index: int) -> str:
    return f"outputs/bench/{index:05d}.png"


def generate(root: Path, count: int, size: int) -> None:
    """Write `count` distinct incompressible objects of `size` bytes where a file store at `root` finds them."""
    pool = os.urandom(size + 64 * MIB)
    folder = root / "outputs" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        start = (index * 7_919_347) % (len(pool) - size)
        (root / key_of(index)).write_bytes(pool[start : start + size])
    os.sync()  # so that writeback of the inputs does not compete with the runs measured


def paths(root: Path, count: int) -> list[Path]:
    return [root / key_of(index) for index in range(count)]


def python_copy(root: Path, count: int, target: Path) -> float:
    start = time.perf_counter()
    with target.open("wb") as writer:
        for path in paths(root, count):
            with path.open("rb") as reader:
                shutil.copyfileobj(reader, writer, MIB)
        writer.flush()
        os.fsync(writer.fileno())
    return time.perf_counter() - start


def cat_copy(root: Path, count: int, target: Path) -> float:
    start = time.perf_counter()
    with target.open("wb") as writer:
        subprocess.run(["cat", *map(str, paths(root, count))], stdout=writer, check=True)
        os.fsync(writer.fileno())
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def zip_run(src_root: Path, dst_root: Path, count: int) -> dict[str, float]:
    source, dest = FileStore(src_root), FileStore(dst_root)
    entries = (ZipEntry(key=key_of(index), name=f"{index:05d}.png") for index in range(count))
    start = time.perf_counter()
    summary = await write_zip(source, entries, dest, "zips/bench.zip", manifest_csv=b"index\n")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "size": summary.size, "peak_rss_mb": peak_rss_mb()}


def child(args: argparse.Namespace) -> None:
    figures = asyncio.run(zip_run(Path(args.src), Path(args.dst), args.count))
    print(json.dumps(figures))


def measure(count: int, size: int, workdir: Path, repeat: int) -> dict[str, float]:
    copies: dict[str, list[float]] = {"cat": [], "copyfileobj": []}
    zips: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        src = root / "src"
        generate(src, count, size)
        for run in range(repeat):
            for kind, copy in (("cat", cat_copy), ("copyfileobj", python_copy)):
                copies[kind].append(copy(src, count, root / "plain.bin"))
                (root / "plain.bin").unlink()
                os.sync()
            dst = root / f"dst{run}"
            command = [sys.executable, __file__, "--child", "--count", str(count), "--src", str(src), "--dst", str(dst)]
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            zips.append(json.loads(result.stdout.splitlines()[-1]))
            shutil.rmtree(dst)
            os.sync()
    total_mib = count * size / MIB
    cat_s, python_s, zip_s = min(copies["cat"]), min(copies["copyfileobj"]), min(z["seconds"] for z in zips)
    copy_s = min(cat_s, python_s)
    return {
        "ratio": copy_s / zip_s,
        "ratio_cat": cat_s / zip_s,
        "ratio_copyfileobj": python_s / zip_s,
        "zip_mib_s": total_mib / zip_s,
        "copy_mib_s": total_mib / copy_s,
        "peak_rss_mb": max(z["peak_rss_mb"] for z in zips),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,5000", help="comma-separated image counts, one run each")
    parser.add_argument("--size-mb", type=float, default=1.0, help="size of each image in MB (10^6 bytes)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary stores go")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each copy and of the ZIP; the best counts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    workdir = Path(args.dir)
    line: list[str] = []
    for count in (int(part) for part in args.counts.split(",")):
        size = int(args.size_mb * MB)
        free = shutil.disk_usage(workdir).free
        if 2.2 * count * size > free:  # the inputs, and the copy or the ZIP, with room to spare
            size = int(free / (2.5 * count))
            print(f"note: not enough disk in {workdir} for {count} x {args.size_mb} MB; using {size / MB:.2f} MB")
        figures = measure(count, size, workdir, args.repeat)
        print(
            f"{count} x {size / MB:.2f} MB: zip {figures['zip_mib_s']:.0f} MiB/s, plain copy "
            f"{figures['copy_mib_s']:.0f} MiB/s, ratio {figures['ratio']:.2f} (to cat {figures['ratio_cat']:.2f}, "
            f"to copyfileobj {figures['ratio_copyfileobj']:.2f}), zip peak RSS "
            f"{figures['peak_rss_mb']:.0f} MB"
        )
        line += [f"ratio_{count}={figures['ratio']:.2f}", f"peak_rss_mb_{count}={figures['peak_rss_mb']:.0f}"]
        if size != int(args.size_mb * MB):
            line.append(f"size_mb_{count}={size / MB:.2f}")
    print(" ".join(line))  # bench output: the key=value line


if __name__ == "__main__":
    main()
