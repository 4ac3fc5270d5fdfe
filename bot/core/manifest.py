"""The manifests of a download: one row per item of a job (or group), as `manifest.csv` and `manifest.json`.

Pure: the dispatcher turns its ledger rows into `ManifestRow`s, `bot.app.downloads` writes the archive. Member names
are chosen here, before the archive is written, so the manifest can say which file holds which item: a batch item
keeps its input's folders and name with the output's extension (`set/part1/img_0001.jpg` → `set/part1/img_0001.png`),
an item without an input (a prompt-list row) is named after its prompt with its number (`a-red-fox-00007.png`); both
are sanitized and made unique by the same `usertext.names.ArchiveNames` rules the ZIP writer applies (`a.jpg` and
`a.png` both made → `a.png`, `a (2).png`, in item order), so the writer keeps them as they are.

Columns, in order (`CSV_COLUMNS`; `manifest.json` has the same keys per item): `index` (the item's number in its job,
from 0), `source` (the input's name in the uploaded ZIP; for a group, where the image came from), `status` (`ok`,
`error`, `cancelled`, `skipped`), `error_code`, `error_reason`, `file` (the member's name in the archive), `seed`,
`model`, `prompt` (the one the item was made with), `aspect_ratio` and `image_size` (the item's own when it set them,
else the job's; empty: the model's default), `mode` (`fast`, or `relax`: made through Gemini's Batch API at its batch
price; per row, as a group's ZIP mixes jobs). New columns are appended, so a reader by position keeps working.

The CSV is opened in spreadsheets, so a text cell that a spreadsheet would run as a formula (starting with
`=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'` (OWASP "CSV injection"). The JSON keeps the exact text.
"""

import csv
import io
import json
import re
import textwrap
import unicodedata
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from bot.core import models
from bot.core.batch import SKIP_LABELS
from bot.core.item_errors import NOT_MADE, item_error_message
from usertext.controls import strip_controls
from usertext.names import ArchiveNames, is_device_name, sanitize_name, suffix

MANIFEST_SCHEMA = 1
CSV_COLUMNS = (
    "index",
    "source",
    "status",
    "error_code",
    "error_reason",
    "file",
    "seed",
    "model",
    "prompt",
    "aspect_ratio",
    "image_size",
    "mode",
)

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_NAME_CHARS = frozenset('<>:"|?*/\\')
_MAX_STEM_CHARS = 120
_MAX_SLUG_CHARS = 40
_NOT_SLUG = re.compile(r"[\W_]+")
_DEFAULT_EXTENSION = ".png"


class ItemStatus(StrEnum):
    """How one item of a job ended."""

    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestRow:
    """One item's outcome, as the download's manifests report it.

    Attributes:
        index: the item's index in its job.
        status: how the item ended.
        prompt: the prompt the item was made with.
        model: the Gemini model that made (or would have made) it.
        source_name: the input's name inside the uploaded batch ZIP, if the job was a batch.
        seed: the seed, if one was used.
        aspect_ratio: the aspect ratio it was made at (the item's own, else the job's; None: the model's default).
        image_size: the image size it was made at (the item's own, else the job's; None: the model's default).
        output_key: the storage key of the image (`ok` items only).
        output_name: the member name in the archive; chosen by `assign_output_names` when None.
        error_code: why the item failed (a `worker.contract.ErrorCode` value, or a bot-side code).
        error_reason: what the user reads about the failure: the fixed message of `error_code`, never the
            worker's or an exception's text.
        mode: `fast`, or `relax` for an item of a relax job (Gemini's Batch API, its batch price).
    """

    index: int
    status: ItemStatus
    prompt: str
    model: str
    source_name: str | None = None
    seed: int | None = None
    aspect_ratio: str | None = None
    image_size: str | None = None
    output_key: str | None = None
    output_name: str | None = None
    error_code: str | None = None
    error_reason: str | None = None
    mode: str = "fast"

    @property
    def has_file(self) -> bool:
        """Tell whether the item goes into the archive: it succeeded and has an output."""
        return self.status is ItemStatus.OK and self.output_key is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestHeader:
    """What `manifest.json` says about the whole download."""

    job_id: str
    prompt: str
    model: str
    created_at: datetime


def item_row(job: models.Job, item: models.Item) -> ManifestRow:
    """Return the manifest row of one of a job's items, as the ledger has it now.

    A failed item without an error code gets `NOT_MADE`; one that has not ended yet says "not finished". The
    reason is the code's fixed user message (`bot.core.item_errors`): the ledger's error message is the operator's
    detail and may quote an exception (an internal host, an object's repr), so it is never shown.
    """
    status = {
        models.ItemStatus.OK: ItemStatus.OK,
        models.ItemStatus.CANCELLED: ItemStatus.CANCELLED,
    }.get(item.status, ItemStatus.ERROR)
    failed = status is ItemStatus.ERROR
    return ManifestRow(
        index=item.index,
        status=status,
        prompt=item.prompt or job.prompt,
        model=job.params.model,
        source_name=item.inputs.source_name,
        seed=item.seed,
        aspect_ratio=item.inputs.aspect_ratio or job.params.aspect_ratio,
        image_size=item.inputs.image_size or job.params.image_size,
        output_key=item.output_key if status is ItemStatus.OK else None,
        error_code=(item.error_code or NOT_MADE) if failed else None,
        error_reason=(item_error_message(item.error_code) if item.status.is_final else "not finished")
        if failed
        else None,
        mode=job_mode(job),
    )


def job_mode(job: models.Job) -> str:
    """Return how a job's items are made, as the manifest says it: `relax` (Gemini's Batch API) or `fast`."""
    return "relax" if job.params.relax else "fast"


def skipped_rows(
    job: models.Job, skipped: Iterable[tuple[str, str]], details: Mapping[str, str] | None = None
) -> Iterator[ManifestRow]:
    """Yield a manifest row for each ZIP entry intake skipped, as `(entry name, reason code)`, after the items.

    The rows are numbered on from the job's items, so every entry of the uploaded ZIP has one row. An entry named in
    `details` (a prompt table's row problem: what is wrong with it) gives that as its reason. No prompt is shown:
    nothing was made from the entry.
    """
    details = details or {}
    for offset, (name, reason) in enumerate(skipped):
        label = SKIP_LABELS.get(reason, reason.replace("_", " "))
        yield ManifestRow(
            index=job.total + offset,
            status=ItemStatus.SKIPPED,
            prompt="",
            model=job.params.model,
            source_name=name,
            aspect_ratio=job.params.aspect_ratio,
            image_size=job.params.image_size,
            error_code=reason,
            error_reason=f"skipped: {details[name]}" if name in details else f"skipped by intake: {label}",
            mode=job_mode(job),
        )


async def batch_rows(
    job: models.Job,
    items: AsyncIterable[models.Item],
    skipped: Iterable[tuple[str, str]],
    details: Mapping[str, str] | None = None,
) -> AsyncIterator[ManifestRow]:
    """Yield a batch's manifest rows: one per item as the ledger streams them, then one per entry intake skipped."""
    async for item in items:
        yield item_row(job, item)
    for row in skipped_rows(job, skipped, details):
        yield row


def safe_stem(name: str | None) -> str:
    r"""Return a flat, extractable file stem from an uploaded file's name, or "" when nothing usable is left.

    `photos/Cat 01.JPG` → `Cat 01`; `..\evil.png` → `evil`; `<a>.png` → `_a_`.
    """
    if not name:
        return ""
    leaf = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    stem = leaf.rsplit(".", 1)[0] if "." in leaf.lstrip(".") else leaf
    cleaned = "".join("_" if c in _UNSAFE_NAME_CHARS else c for c in strip_controls(stem, replacement="_"))
    cleaned = cleaned[:_MAX_STEM_CHARS].strip(" .")
    return "_" + cleaned if is_device_name(cleaned) else cleaned


def source_path(name: str | None) -> str:
    r"""Return an uploaded file's name as a safe relative path without its extension, or "" when no leaf is usable.

    The folders are kept, cleaned by `usertext.names.sanitize_name` (no absolute path, no `..`, no control or
    Windows-refused character or device name): `set/part1/img_0001.jpg` → `set/part1/img_0001`,
    `../../etc/x.png` → `etc/x`, `C:\in\aux.png` → `C_/in/_aux`.
    """
    stem = safe_stem(name)
    if not stem or name is None:
        return ""
    head, slash, _ = sanitize_name(name).rpartition("/")
    return f"{head}{slash}{stem}"


def prompt_slug(prompt: str) -> str:
    """Return a prompt as a short file-name stem: lowercase words joined by `-`, cut at a word, or "" when none.

    `A red fox, in snow!` → `a-red-fox-in-snow`. Letters of any script are kept (ZIP names are UTF-8).
    """
    text = unicodedata.normalize("NFC", strip_controls(prompt, replacement=" ")).casefold()
    words = _NOT_SLUG.sub("-", text).strip("-")
    if len(words) <= _MAX_SLUG_CHARS:
        return words
    cut = words[: _MAX_SLUG_CHARS + 1]
    return (cut.rsplit("-", 1)[0] if "-" in cut else cut[:_MAX_SLUG_CHARS]).strip("-")


def prompt_name(prompt: str, tag: str) -> str:
    """Return a file stem for an image with no input of its own: its prompt's slug and a tag that tells it apart."""
    slug = prompt_slug(prompt)
    return f"{slug}-{tag}" if slug else f"image-{tag}"


def short_id(job_id: str, index: int) -> str:
    """Return a short, stable id of a job's image: its job id's first hex digits and its number (`3f9a0c-2`)."""
    return f"{job_id.rpartition('_')[2][:6]}-{index + 1}"


def group_member_stem(*, source_name: str | None, prompt: str, job_id: str, index: int) -> str:
    """Return the file stem of an image in a group's ZIP: its input's name, else its prompt, and its short id.

    A thread mixes images of many jobs, so the short id tells two `cat` or two `a-red-fox` apart and leads back to
    the job (`cat-3f9a0c-17`, `a-red-fox-9b1e22-2`); the group's ZIP is flat, like the thread.
    """
    return f"{safe_stem(source_name) or prompt_slug(prompt) or 'image'}-{short_id(job_id, index)}"


def image_origin(kind: str, job_id: str, index: int) -> str:
    """Return where an image without an input came from, for a group manifest's `source`: `grid j_3f9a… #2`."""
    return f"{kind} {job_id} #{index + 1}"


class OutputNamer:
    """Names rows one at a time, as `assign_output_names` does for a whole sequence (rows streamed from a ledger)."""

    def __init__(self, *, reserved: Iterable[str] = ()) -> None:
        self._names = ArchiveNames(reserved)

    def __call__(self, row: ManifestRow) -> ManifestRow:
        """Return the row with its member name: unique among the rows named so far, None without a file."""
        if not row.has_file:
            return row if row.output_name is None else replace(row, output_name=None)
        extension = suffix(row.output_key or "").lower() or _DEFAULT_EXTENSION
        if row.output_name:
            path, extension = source_path(row.output_name), (suffix(row.output_name).lower() or extension)
        else:
            path = source_path(row.source_name)
        path = path or prompt_name(row.prompt, f"{row.index + 1:05d}")
        return replace(row, output_name=self._names.add(path + extension))


def assign_output_names(rows: Iterable[ManifestRow], *, reserved: Iterable[str] = ()) -> list[ManifestRow]:
    """Give every row that has a file a unique member name; other rows get none.

    The name is the row's `output_name` if it has one, else its source name with its folders (`source_path`), else
    its prompt's slug and its number from 1 (`prompt_name`), with the output key's extension (`.png` by default).
    Names are unique ignoring case (`ArchiveNames`): the second `cat.png` becomes `cat (2).png`. Rows keep their
    order, so the same rows get the same names every time.
    """
    namer = OutputNamer(reserved=reserved)
    return [namer(row) for row in rows]


def count_statuses(rows: Iterable[ManifestRow]) -> dict[str, int]:
    """Return how many rows ended in each status, every status present, plus `total`."""
    counter = Counter(row.status for row in rows)
    counts = {status.value: counter.get(status, 0) for status in ItemStatus}
    counts["total"] = sum(counter.values())
    return counts


def guard_cell(value: str) -> str:
    """Return `value` made inert for spreadsheets: a leading `'` when it would start a formula."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


_ROWS_PER_CHUNK = 200  # rows rendered into one piece of `iter_csv` / `iter_json`


def render_csv(rows: Sequence[ManifestRow]) -> str:
    """Return `manifest.csv`: a header row, then one row per item (RFC 4180 quoting, CRLF line ends)."""
    return "".join(iter_csv(rows))


def iter_csv(rows: Iterable[ManifestRow]) -> Iterator[str]:
    """Yield `manifest.csv` in pieces of up to `_ROWS_PER_CHUNK` rows (the text `render_csv` returns)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for n, row in enumerate(rows, start=1):
        cells: list[str | int] = [
            row.index,
            guard_cell(row.source_name or ""),
            row.status.value,
            guard_cell(row.error_code or ""),
            guard_cell(row.error_reason or ""),
            guard_cell(row.output_name or ""),
            "" if row.seed is None else row.seed,
            guard_cell(row.model),
            guard_cell(row.prompt),
            guard_cell(row.aspect_ratio or ""),
            guard_cell(row.image_size or ""),
            row.mode,
        ]
        writer.writerow(cells)
        if n % _ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def render_json(header: ManifestHeader, rows: Sequence[ManifestRow]) -> str:
    """Return `manifest.json`: the download's summary and one object per item, in row order."""
    return "".join(iter_json(header, rows))


def iter_json(header: ManifestHeader, rows: Sequence[ManifestRow]) -> Iterator[str]:
    """Yield `manifest.json` in pieces of up to `_ROWS_PER_CHUNK` items (the text `render_json` returns).

    The text is what `json.dumps(document, indent=2)` makes, written one item at a time so that a 10,000-item
    manifest never exists as 10,000 dictionaries, nor as one string, at once.
    """
    summary = {
        "schema": MANIFEST_SCHEMA,
        "job_id": header.job_id,
        "prompt": header.prompt,
        "model": header.model,
        "created": header.created_at.isoformat(),
        "counts": count_statuses(rows),
        "items": [],
    }
    head = json.dumps(summary, ensure_ascii=False, indent=2)
    if not rows:
        yield head + "\n"
        return
    out = io.StringIO()
    out.write(head.removesuffix("[]\n}"))
    out.write("[\n")
    for i, row in enumerate(rows):
        item = {
            "index": row.index,
            "source": row.source_name,
            "status": row.status.value,
            "error_code": row.error_code,
            "error_reason": row.error_reason,
            "file": row.output_name,
            "seed": row.seed,
            "model": row.model,
            "prompt": row.prompt,
            "aspect_ratio": row.aspect_ratio,
            "image_size": row.image_size,
            "mode": row.mode,
        }
        if i:
            out.write(",\n")
            if i % _ROWS_PER_CHUNK == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        out.write(textwrap.indent(json.dumps(item, ensure_ascii=False, indent=2), "    "))
    out.write("\n  ]\n}\n")
    yield out.getvalue()
