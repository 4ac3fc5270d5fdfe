"""Measure safe intake: images per second from a ZIP into a file store, peak RSS, and the cost of refusals.

Builds (in a temporary directory) a ZIP of distinct JPEG, PNG and WebP photo-like images, takes it in through
`UploadIntake` into a `FileStore` (with one check at a time, and with the bot's `INTAKE_PARALLEL_CHECKS`: the
ratio is `speedup_N_checks_vs_1`), then times the refusal of a 60,000-entry ZIP and the check of one 36-megapixel
JPEG. `intake_peak_rss_mb` is taken before that JPEG is built (building it dominates `peak_rss_mb`); it should not
grow with the number of images. Usage: `python bench/intake_throughput.py [IMAGES]` (default 300). The last line
is `key=value` figures.
"""

import asyncio
import io
import random
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

# `make bench` runs `python bench/<name>.py`, which puts bench/ rather than the repository on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.settings import BotSettings
from storage._imagecheck import check_image
from storage.file import FileStore
from storage.intake import IntakeRefusedError, UploadIntake
from tests.fakes.hostile import many_entries_zip

PARALLEL = BotSettings().intake_parallel_checks  # what the bot's batches use


def _photo(width: int, height: int, seed: int) -> Image.Image:
    # A smooth gradient with some noise: compresses like a photo, unlike pure noise or flat colour.
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    noise = Image.frombytes("RGB", (width // 4, height // 4), rng.randbytes(width // 4 * (height // 4) * 3))
    return Image.blend(base, noise.resize((width, height)), 0.35)


def build_zip(path: Path, count: int) -> int:
    """Write a ZIP of `count` distinct images to `path`; return the total image bytes."""
    total = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(count):
            kind = ("jpeg", "png", "webp")[index % 3]
            image = _photo(1024, 768, index) if kind == "jpeg" else _photo(512, 512, index)
            out = io.BytesIO()
            image.save(out, kind.upper(), **({"quality": 85} if kind != "png" else {}))
            data = out.getvalue()
            total += len(data)
            archive.writestr(f"photos/{index:05d}.{kind}", data)
    return total


async def run(count: int) -> dict[str, str]:
    """Run the measurements and return the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        upload = root / "upload.zip"
        image_bytes = await asyncio.to_thread(build_zip, upload, count)
        elapsed: dict[int, float] = {}
        for parallel in (1, PARALLEL):  # each into an empty store: a stored image is not written again
            store = FileStore(root / f"store-{parallel}")
            intake = UploadIntake(store, max_parallel_checks=parallel)
            start = time.perf_counter()
            report = await intake.zip_file(upload)
            elapsed[parallel] = time.perf_counter() - start
            assert len(report.accepted) == count, report.skipped[:3]
            await store.close()

        many = root / "many.zip"
        await asyncio.to_thread(many.write_bytes, many_entries_zip(60_000))
        start = time.perf_counter()
        try:
            await UploadIntake(FileStore(root / "store-refused")).zip_file(many)
        except IntakeRefusedError:
            refuse_ms = (time.perf_counter() - start) * 1000
        else:
            raise AssertionError("the 60,000-entry ZIP was not refused")

    intake_peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    big = io.BytesIO()
    _photo(6000, 6000, 1).save(big, "JPEG", quality=90)
    start = time.perf_counter()
    check_image(big.getvalue(), max_pixels=40_000_000)
    big_jpeg_ms = (time.perf_counter() - start) * 1000

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "images": str(count),
        "images_per_s": f"{count / elapsed[PARALLEL]:.0f}",
        "mb_per_s": f"{image_bytes / elapsed[PARALLEL] / 1e6:.1f}",
        "serial_images_per_s": f"{count / elapsed[1]:.0f}",
        f"speedup_{PARALLEL}_checks_vs_1": f"{elapsed[1] / elapsed[PARALLEL]:.2f}",
        "refuse_60k_entries_ms": f"{refuse_ms:.1f}",
        "check_36mp_jpeg_ms": f"{big_jpeg_ms:.0f}",
        "intake_peak_rss_mb": f"{intake_peak_rss_mb:.0f}",
        "peak_rss_mb": f"{peak_rss_mb:.0f}",
    }


def main() -> None:
    """Print the figures as one `key=value` line."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    figures = asyncio.run(run(count))
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
