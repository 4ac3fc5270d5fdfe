"""Throughput of the file and S3 stores against a plain copy of the same bytes on the same disk.

Writes `--mib` MiB as a stream of 1 MiB chunks through `FileStore.put` (temp file, fsync, rename) and reads it
back with `FileStore.read`; a plain `shutil.copyfileobj` of the same bytes, also fsynced, is the baseline. Then
the same stream goes into moto's S3 server on 127.0.0.1 as a multipart upload (moto is slow: only a figure to
compare runs with). The last line holds the figures as key=value pairs.
"""

import argparse
import asyncio
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

# `make bench` runs `python bench/<name>.py`, which puts bench/ rather than the repository on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.file import FileStore
from storage.s3 import S3Store

MIB = 1024 * 1024


async def source(total_mib: int) -> AsyncIterator[bytes]:
    block = os.urandom(MIB)
    for _ in range(total_mib):
        yield block


def plain_copy(src: Path, dst: Path) -> None:
    with src.open("rb") as reader, dst.open("wb") as writer:
        shutil.copyfileobj(reader, writer, MIB)
        writer.flush()
        os.fsync(writer.fileno())


async def measure(total_mib: int, s3_mib: int) -> dict[str, str]:
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        store = FileStore(root / "store")

        start = time.perf_counter()
        await store.put("bench/a.bin", source(total_mib))
        put_s = time.perf_counter() - start

        start = time.perf_counter()
        read_bytes = 0
        async for chunk in store.read("bench/a.bin"):
            read_bytes += len(chunk)
        read_s = time.perf_counter() - start
        assert read_bytes == total_mib * MIB

        src = await asyncio.to_thread(store.path_for, "bench/a.bin")
        start = time.perf_counter()
        await asyncio.to_thread(plain_copy, src, root / "plain.bin")
        copy_s = time.perf_counter() - start
    file_peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before moto holds S3 objects

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        kwargs = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}
        client = boto3.session.Session().client("s3", endpoint_url=endpoint, **kwargs)  # type: ignore[call-overload]
        client.create_bucket(Bucket="bench")
        s3 = S3Store(
            bucket="bench",
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id="bench",
            secret_access_key="bench",
        )
        start = time.perf_counter()
        await s3.put("a.bin", source(s3_mib))
        s3_put_s = time.perf_counter() - start
        await s3.close()
    finally:
        server.stop()

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "mib": str(total_mib),
        "put_mib_s": f"{total_mib / put_s:.0f}",
        "read_mib_s": f"{total_mib / read_s:.0f}",
        "plain_copy_mib_s": f"{total_mib / copy_s:.0f}",
        "put_ratio": f"{copy_s / put_s:.2f}",
        "s3_put_mib_s": f"{s3_mib / s3_put_s:.0f}",
        "file_peak_rss_mb": f"{file_peak_rss_mb:.0f}",
        "peak_rss_mb": f"{peak_rss_mb:.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="size of the file-store object in MiB")
    parser.add_argument("--s3-mib", type=int, default=64, help="size of the S3 object in MiB")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    figures = asyncio.run(measure(args.mib, args.s3_mib))
    print(" ".join(f"{name}={value}" for name, value in figures.items()))  # bench output: the key=value line


if __name__ == "__main__":
    main()
