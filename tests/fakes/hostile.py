"""Builders of a hostile upload corpus, made at test time in memory (reusable by later /batch tests).

Everything returns bytes; nothing touches the disk. Image builders are deterministic for a given seed, so two
calls with the same arguments give byte-identical files (duplicates) and different seeds give different ones.
"""

import gzip
import io
import random
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFIFO = 0o010000


def _pixels(width: int, height: int, seed: int) -> Image.Image:
    # A noisy image, so PNG and WebP cannot compress it away and each seed gives different bytes.
    rng = random.Random(seed)
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


def make_png(width: int = 64, height: int = 48, *, seed: int = 0) -> bytes:
    """Return a valid PNG of noise."""
    out = io.BytesIO()
    _pixels(width, height, seed).save(out, "PNG")
    return out.getvalue()


def make_jpeg(width: int = 64, height: int = 48, *, seed: int = 0, quality: int = 90) -> bytes:
    """Return a valid baseline JPEG of noise."""
    out = io.BytesIO()
    _pixels(width, height, seed).save(out, "JPEG", quality=quality)
    return out.getvalue()


def make_webp(width: int = 64, height: int = 48, *, seed: int = 0, lossless: bool = False) -> bytes:
    """Return a valid WebP of noise (lossy VP8 or lossless VP8L)."""
    out = io.BytesIO()
    _pixels(width, height, seed).save(out, "WEBP", lossless=lossless, quality=80)
    return out.getvalue()


def make_gif(width: int = 16, height: int = 16) -> bytes:
    """Return a valid GIF: a real image in a format intake does not accept."""
    out = io.BytesIO()
    Image.new("P", (width, height), 3).save(out, "GIF")
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """Return a structurally valid PNG whose IHDR claims `width` x `height`, with a tiny IDAT (a pixel bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_with_tar_magic() -> bytes:
    """Return a valid PNG whose bytes 257-262 spell tar's `ustar` magic (inside a tEXt chunk)."""
    png = make_png(16, 16, seed=99)
    text_data_at = 33 + 8  # after the signature, IHDR chunk, and the tEXt chunk's length and type
    keyword = b"Comment\0"
    padding = b"x" * (257 - text_data_at - len(keyword))
    chunk = _png_chunk(b"tEXt", keyword + padding + b"ustar\x0000")
    data = png[:33] + chunk + png[33:]
    assert data[257:262] == b"ustar"
    return data


def png_with_bad_idat(width: int = 32, height: int = 32) -> bytes:
    """Return a PNG whose chunk CRCs are all right but whose IDAT is not a deflate stream."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"this is not zlib data" * 8)
        + _png_chunk(b"IEND", b"")
    )


def truncated_jpeg(*, seed: int = 0) -> bytes:
    """Return the first half of a valid JPEG (cut in the middle of its scan)."""
    data = make_jpeg(128, 96, seed=seed)
    return data[: len(data) // 2]


def truncated_png(*, seed: int = 0) -> bytes:
    """Return the first half of a valid PNG (cut in the middle of its IDAT, no IEND)."""
    data = make_png(128, 96, seed=seed)
    return data[: len(data) // 2]


def text_named_png() -> bytes:
    """Return plain text (meant to be stored under a `.png` name)."""
    return b"I am not a picture, whatever my name says.\n" * 20


def gzip_bytes(data: bytes = b"hello" * 100) -> bytes:
    """Return a gzip stream (a nested archive by content)."""
    return gzip.compress(data)


def tar_bytes(name: str = "inner.png", data: bytes = b"not really a png") -> bytes:
    """Return a tar archive (a nested archive by content: `ustar` at offset 257)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass(slots=True)
class ZipEntry:
    """One entry of a crafted ZIP."""

    name: str
    data: bytes
    compress_type: int = zipfile.ZIP_DEFLATED
    unix_mode: int | None = None
    encrypted: bool = False
    declared_size: int | None = None  # overwrite the uncompressed size in both headers (a lying header)
    declared_method: int | None = None  # overwrite the compression method in both headers (e.g. 98, PPMd)


@dataclass(slots=True)
class ZipBuilder:
    """Build a ZIP in memory with zipfile, then patch what zipfile refuses to write (flags, lying sizes)."""

    entries: list[ZipEntry] = field(default_factory=list)

    def add(self, name: str, data: bytes, **options: object) -> "ZipBuilder":
        """Add an entry; options are `ZipEntry` fields."""
        self.entries.append(ZipEntry(name, data, **options))  # type: ignore[arg-type]  # test helper kwargs
        return self

    def build(self) -> bytes:
        """Return the ZIP's bytes."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for entry in self.entries:
                info = zipfile.ZipInfo(entry.name, date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = entry.compress_type
                if entry.unix_mode is not None:
                    info.create_system = 3
                    info.external_attr = entry.unix_mode << 16
                archive.writestr(info, entry.data)
        data = bytearray(out.getvalue())
        for index, entry in enumerate(self.entries):
            if entry.encrypted:
                _patch_entry(data, index, flag_bits=0x0001)
            if entry.declared_size is not None:
                _patch_entry(data, index, file_size=entry.declared_size)
            if entry.declared_method is not None:
                _patch_entry(data, index, method=entry.declared_method)
        return bytes(data)


def _central_records(data: bytearray) -> list[int]:
    """Return the offsets of the central-directory records, in order."""
    eocd = data.rfind(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack_from("<HLL", data, eocd + 10)
    offsets = []
    at = cd_offset
    for _ in range(count):
        assert data[at : at + 4] == b"PK\x01\x02"
        offsets.append(at)
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        at += 46 + name_len + extra_len + comment_len
    return offsets


def _patch_entry(
    data: bytearray,
    index: int,
    *,
    flag_bits: int = 0,
    file_size: int | None = None,
    method: int | None = None,
) -> None:
    record = _central_records(data)[index]
    local = struct.unpack_from("<L", data, record + 42)[0]
    assert data[local : local + 4] == b"PK\x03\x04"
    if flag_bits:
        for flags_at in (record + 8, local + 6):
            (flags,) = struct.unpack_from("<H", data, flags_at)
            struct.pack_into("<H", data, flags_at, flags | flag_bits)
    if file_size is not None:
        struct.pack_into("<L", data, record + 24, file_size)
        struct.pack_into("<L", data, local + 22, file_size)
    if method is not None:
        struct.pack_into("<H", data, record + 10, method)
        struct.pack_into("<H", data, local + 8, method)


def many_entries_zip(count: int, *, extra: Sequence[str] = ()) -> bytes:
    """Return a ZIP of `count` one-byte stored entries, written directly (zipfile is ~10x slower for 60,000).

    The entries are named `img000000.png`…, then one per name of `extra` (text files, say).
    """
    local_parts: list[bytes] = []
    central_parts: list[bytes] = []
    offset = 0
    crc = zlib.crc32(b"x")
    names = [f"img{i:06d}.png" for i in range(count)] + list(extra)
    for text_name in names:
        name = text_name.encode()
        local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 10, 0, 0, 0, 0x21, crc, 1, 1, len(name), 0) + name + b"x"
        central_parts.append(
            struct.pack(
                "<4s6H3L5H2L", b"PK\x01\x02", 20, 10, 0, 0, 0, 0x21, crc, 1, 1, len(name), 0, 0, 0, 0, 0, offset
            )
            + name
        )
        local_parts.append(local)
        offset += len(local)
    central = b"".join(central_parts)
    entries = min(len(names), 0xFFFF)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, len(central), offset, 0)
    if len(names) > 0xFFFF:  # pragma: no cover - ZIP64 end records are not needed for the corpus sizes used
        raise ValueError("use at most 65,535 entries")
    return b"".join(local_parts) + central + eocd


def as_zip64(data: bytes, *, claimed_entries: int | None = None) -> bytes:
    """Rewrite a small ZIP's end records in ZIP64 form (as for >65,535 entries or >4 GiB), optionally lying.

    `claimed_entries` replaces the entry count of the ZIP64 end record; the directory itself is unchanged.
    """
    eocd = data.rfind(b"PK\x05\x06")
    _, _, _, _, total, cd_size, cd_offset, _ = struct.unpack_from("<4s4H2LH", data, eocd)
    count = total if claimed_entries is None else claimed_entries
    zip64_eocd = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:eocd] + zip64_eocd + locator + end


@dataclass(frozen=True, slots=True)
class Corpus:
    """A mixed ZIP and what intake should make of each entry."""

    data: bytes
    good: dict[str, bytes]  # entry name -> image bytes that must be stored
    duplicates: dict[str, str]  # entry name -> name of the first entry with the same content
    skipped: dict[str, str]  # entry name -> expected SkipReason value
    clutter: tuple[str, ...]
    directories: tuple[str, ...]


def hostile_corpus() -> Corpus:
    """Return one ZIP holding good images, duplicates, clutter and every per-entry attack, with expectations."""
    png = make_png(80, 60, seed=1)
    jpeg = make_jpeg(120, 90, seed=2)
    webp = make_webp(50, 40, seed=3)
    webp_lossless = make_webp(33, 21, seed=4, lossless=True)
    big_png = make_png(400, 300, seed=5)
    good = {
        "photos/a.png": png,
        "photos/b.jpg": jpeg,
        "photos/c.webp": webp,
        "photos/d.webp": webp_lossless,
        "big.png": big_png,
        "misnamed.gif": make_png(20, 20, seed=6),  # a real PNG with a wrong name: accepted by content
    }
    nested_zip = ZipBuilder().add("inner.png", png).build()
    builder = ZipBuilder().add("photos/", b"")
    for name, data in good.items():
        builder.add(name, data)
    builder.add("copy/a-again.png", png)  # duplicate content, different name
    builder.add("copy/b-again.jpg", jpeg, compress_type=zipfile.ZIP_STORED)
    skipped = {
        "../../evil.png": "unsafe_path",
        "/abs.png": "unsafe_path",
        "a\\..\\..\\win.png": "unsafe_path",
        "C:/drive.png": "unsafe_path",
        "link.png": "symlink",
        "fifo.png": "not_regular_file",
        "secret.png": "encrypted",
        "inner.zip": "nested_archive",
        "sneaky.png": "nested_archive",
        "archive.jpg": "nested_archive",
        "bomb.png": "suspicious_ratio",
        "huge.png": "too_large",
        "liar.png": "corrupt_entry",
        "ppmd.png": "unsupported_compression",
        "pixels.png": "too_many_pixels",
        "notes.png": "not_an_image",
        "anim.gif": "not_an_image",
        "empty.png": "not_an_image",
        "cut.jpg": "corrupt_image",
        "cut.png": "corrupt_image",
        "badidat.png": "corrupt_image",
    }
    builder.add("../../evil.png", png)
    builder.add("/abs.png", png)
    builder.add("a\\..\\..\\win.png", png)
    builder.add("C:/drive.png", png)
    builder.add("link.png", b"/etc/passwd", unix_mode=S_IFLNK | 0o777)
    builder.add("fifo.png", b"", unix_mode=S_IFIFO | 0o644)
    builder.add("secret.png", make_png(10, 10, seed=7), encrypted=True)
    builder.add("inner.zip", nested_zip)
    builder.add("sneaky.png", nested_zip)
    builder.add("archive.jpg", gzip_bytes())
    builder.add("bomb.png", b"\0" * (8 * 1024 * 1024))  # 8 MiB of zeros deflate ~1000:1
    builder.add("huge.png", b"\0" * (51 * 1024 * 1024 // 64) * 64)  # over the 50 MiB image limit
    builder.add("liar.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 4096, declared_size=64)  # header understates the size
    builder.add("ppmd.png", make_png(12, 12, seed=10), declared_method=98)
    builder.add("pixels.png", png_claiming(100_000, 100_000))
    builder.add("notes.png", text_named_png())
    builder.add("anim.gif", make_gif())
    builder.add("empty.png", b"")
    builder.add("cut.jpg", truncated_jpeg(seed=8))
    builder.add("cut.png", truncated_png(seed=9))
    builder.add("badidat.png", png_with_bad_idat())
    clutter = (
        "__MACOSX/photos/._a.png",
        ".DS_Store",
        "photos/.DS_Store",
        "Thumbs.db",
        "photos/desktop.ini",
        ".hidden.png",
        ".git/config",
    )
    for name in clutter:
        builder.add(name, png if name.endswith(".png") else b"junk")
    return Corpus(
        data=builder.build(),
        good=good,
        duplicates={"copy/a-again.png": "photos/a.png", "copy/b-again.jpg": "photos/b.jpg"},
        skipped=skipped,
        clutter=clutter,
        directories=("photos/",),
    )
