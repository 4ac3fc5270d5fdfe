"""Peak memory of a relax_collect job: the result file is streamed, so memory follows a few lines, not the file.

The parent starts the local Gemini server in-process and plants a result file of `--items` lines, each an answer
holding one `--image-mb` MB PNG (base64: 4/3 as many bytes on the line). A child process runs the worker's handler
on a relax_collect job for it, writing to a temporary file store, and reports its resident set before the job
(after start-up) and its peak (VmHWM) after, so the figure belongs to that job alone. The last line holds the
figures as key=value pairs; `growth_mb` (peak minus start) is what collecting cost.
"""

import argparse
import asyncio
import base64
import io
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

# `make bench` runs `python bench/<name>.py`, which puts bench/ rather than the repository on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

MB = 1000 * 1000


def noise_png(megabytes: float, seed: int) -> bytes:
    """A PNG of random pixels stored uncompressed: about `megabytes` MB that no encoder shrinks."""
    side = int((megabytes * MB / 3) ** 0.5)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(3 * side * side)).save(
        out, format="PNG", compress_level=0
    )
    return out.getvalue()


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


async def child(url: str, file_name: str, items: int, store_dir: str) -> None:
    from storage.file import FileStore
    from worker.deps import WorkerDeps
    from worker.gemini import GeminiImageGenerator
    from worker.handler import make_handler

    generator = await asyncio.to_thread(GeminiImageGenerator, api_key="local-key", base_url=url)
    async with generator as gen:
        deps = WorkerDeps(store=FileStore(store_dir), generator=gen, files=gen)
        job = {
            "kind": "relax_collect",
            "job_id": "j_bench",
            "part": 0,
            "model": "gemini-2.5-flash-image",
            "result_file": file_name,
            "items": [{"index": i, "output_key": f"out/j_bench/{i}.png"} for i in range(items)],
        }
        start_kib = vm_kib("VmRSS")
        output = await make_handler(deps)({"id": "rp-bench", "input": job})
        peak_kib = vm_kib("VmHWM")
    print(json.dumps({"ok": output.get("ok"), "start_kib": start_kib, "peak_kib": peak_kib}))


async def parent(items: int, image_mb: float) -> None:
    from local.gemini.server import LocalGemini

    image = base64.b64encode(noise_png(image_mb, 1)).decode()
    line = {
        "response": {
            "candidates": [
                {"content": {"role": "model", "parts": [{"inlineData": {"mimeType": "image/png", "data": image}}]}}
            ]
        }
    }
    lines = [json.dumps({"key": str(i), **line}).encode() + b"\n" for i in range(items)]
    async with LocalGemini(port=0) as gemini:
        planted = gemini.files.add_generated(lines, "application/jsonl")
        del lines
        with tempfile.TemporaryDirectory() as store_dir:
            args = [sys.executable, __file__, "--child", gemini.url, f"files/{planted.file_id}", str(items), store_dir]
            proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE)
            out, _ = await proc.communicate()
    figures = json.loads(out.decode().strip().splitlines()[-1])
    file_mb = planted.size / MB
    growth = (figures["peak_kib"] - figures["start_kib"]) * 1024 / MB
    print(
        f"items={items} file_mb={file_mb:.0f} ok={figures['ok']} start_mb={figures['start_kib'] * 1024 / MB:.0f} "
        f"peak_mb={figures['peak_kib'] * 1024 / MB:.0f} growth_mb={growth:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--image-mb", type=float, default=1.0)
    parser.add_argument("--child", nargs=4, metavar=("URL", "FILE", "ITEMS", "STORE"))
    args = parser.parse_args()
    if args.child:
        url, file_name, items, store_dir = args.child
        asyncio.run(child(url, file_name, int(items), store_dir))
    else:
        asyncio.run(parent(args.items, args.image_mb))


if __name__ == "__main__":
    main()
