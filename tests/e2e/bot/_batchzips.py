"""ZIPs of tiny, distinct PNGs for `/batch` tests (blocking: call through `asyncio.to_thread`)."""

import hashlib
import io
import zipfile

from PIL import Image


def tiny_png(index: int) -> bytes:
    """Return a 4x4 PNG whose colour is unique to `index` (so its SHA-256 is too)."""
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (index % 256, (index // 256) % 256, 77)).save(out, format="PNG")
    return out.getvalue()


def make_zip(count: int, *, extras: dict[str, bytes] | None = None) -> bytes:
    """Return a ZIP of `count` PNGs named `img-00000.png`…, plus `extras` (name → bytes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(count):
            archive.writestr(f"photos/img-{i:05d}.png", tiny_png(i))
        for name, data in (extras or {}).items():
            archive.writestr(name, data)
    return out.getvalue()


def make_named_zip(names: list[str]) -> bytes:
    """Return a ZIP holding `tiny_png(i)` under the i-th of `names` (folders and all)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, name in enumerate(names):
            archive.writestr(name, tiny_png(i))
    return out.getvalue()


def sha256_of(index: int) -> str:
    """Return the SHA-256 of `tiny_png(index)`."""
    return hashlib.sha256(tiny_png(index)).hexdigest()
