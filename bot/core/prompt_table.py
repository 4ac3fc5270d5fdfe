"""A prompt per image for a batch: a `prompts.csv` or `prompts.jsonl` table, captions beside images, a template.

Pure: intake hands the bot the ZIP's text files; this module reads them and decides each item's prompt and options.

- **The table** sits at the ZIP's root. `prompts.csv` is UTF-8 (a byte-order mark is allowed) with a header row naming
  its columns; `prompts.jsonl` holds one JSON object per line with the same keys. `file` names an image of the ZIP
  (empty: a text-to-image item), `prompt` is its prompt; `negative`, `aspect_ratio`, `image_size`, `seed` and `refs`
  (further images of the ZIP, separated by `;` or `|`) are optional. A column Peel does not know refuses the whole
  table, so a misspelt `promt` cannot silently fall back to the command's prompt for every image.
- **Captions**: `cat.txt` beside `cat.jpg` (same folder, same stem) is that image's prompt.
- **The command's prompt** is the default for images with neither, or a template when it holds `{prompt}` (the
  row's or caption's prompt), `{name}` (the image's file stem) or `{folder}` (its folder path). A row wins over a
  caption. The command's inline parameters (`--ar`, `--no`, …) apply to every item; a row's own values win.

A row that names a missing image, carries a bad value, repeats a file or has no usable prompt is a `RowProblem`
with its line number: it is reported and skipped, and nothing else is affected.
"""

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from bot.core.params import ParsedPrompt, PromptParams, parse_prompt
from usertext.controls import strip_controls
from worker.contract import ASPECT_RATIOS_10, EXTREME_ASPECT_RATIOS, IMAGE_SIZES, MAX_PROMPT_CHARS, MAX_SEED, model_spec

CSV_NAME = "prompts.csv"
JSONL_NAME = "prompts.jsonl"
TABLE_NAMES = (CSV_NAME, JSONL_NAME)
CAPTION_SUFFIX = ".txt"
COLUMNS = ("file", "prompt", "negative", "aspect_ratio", "image_size", "seed", "refs")
REQUIRED_COLUMNS = ("file", "prompt")
_PLACEHOLDER = re.compile(r"\{(prompt|name|folder)\}")
_REF_SEPARATOR = re.compile(r"[;|]")
_ALL_RATIOS = (*ASPECT_RATIOS_10, *EXTREME_ASPECT_RATIOS)  # every ratio some model takes; the model is checked later
_RATIO = re.compile(r"^\s*(\d{1,4})\s*[:x/]\s*(\d{1,4})\s*$")

# Problem codes: stable, written to the manifest's error_code column (with the line in its source column).
MISSING_FILE = "row_missing_file"
BAD_VALUE = "row_bad_value"
DUPLICATE = "row_duplicate"
EMPTY_PROMPT = "row_empty_prompt"
PROMPT_TOO_LONG = "row_prompt_too_long"
BAD_ROW = "row_malformed"
NO_PROMPT = "no_prompt"
CAPTION_WITHOUT_IMAGE = "caption_without_image"
REFERENCE_ONLY = "reference_only"


class TableError(ValueError):
    """The table as a whole cannot be read (no header, an unknown or missing column); `str()` says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptRow:
    """One row of the table, its values checked (not yet against the ZIP or the model)."""

    line: int
    file: str  # "" for a text-to-image row
    prompt: str
    negative: tuple[str, ...] = ()
    aspect_ratio: str | None = None
    image_size: str | None = None
    seed: int | None = None
    refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RowProblem:
    """A row (or a ZIP entry) that gives no item: where it is, what it names, a stable code and the details."""

    line: int | None  # the table's line; None for an entry of the ZIP (a caption, a reference image)
    file: str
    code: str
    detail: str

    def where(self, table: str) -> str:
        """Return where the problem is, as the plan and the manifest name it: `prompts.csv line 7 (cat.jpg)`."""
        if self.line is None:
            return self.file
        return f"{table} line {self.line}" + (f" ({self.file})" if self.file else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptTable:
    """The rows of a table that read well, and the problems of the others, in line order."""

    name: str
    rows: tuple[PromptRow, ...]
    problems: tuple[RowProblem, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemPrompt:
    """What one item is made from: its image (None: text to image), prompt, options and reference images by name.

    `aspect_ratio`, `image_size` and `seed` are None where the job's apply.
    """

    image: str | None
    line: int | None
    text: str
    negative: tuple[str, ...] = ()
    aspect_ratio: str | None = None
    image_size: str | None = None
    seed: int | None = None
    refs: tuple[str, ...] = ()

    def model_prompt(self) -> str:
        """Return the text sent to the model (and embedded in the PNG), `--no` words written into it."""
        return ParsedPrompt(text=self.text, params=PromptParams(negative=self.negative)).model_prompt()

    def display(self) -> str:
        """Return the prompt as Peel shows it back: the text, then the item's own parameters."""
        params = PromptParams(
            aspect_ratio=self.aspect_ratio, image_size=self.image_size, seed=self.seed, negative=self.negative
        )
        return ParsedPrompt(text=self.text, params=params).display()


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptPlan:
    """Every item's prompt, the rows and entries that give none, and where the prompts came from."""

    items: tuple[ItemPrompt, ...]
    problems: tuple[RowProblem, ...] = ()
    source: str = "one prompt"
    table: str = CSV_NAME  # the table's name, for `RowProblem.where`


# ---------------------------------------------------------------------------------------------------------------
# Reading the table
# ---------------------------------------------------------------------------------------------------------------


def table_name(name: str) -> str | None:
    """Return the table name an entry at the ZIP's root stands for (`PROMPTS.CSV` too), or None."""
    lowered = name.lower()
    return lowered if lowered in TABLE_NAMES else None


def parse_table(name: str, text: str) -> PromptTable:
    """Read `prompts.csv` or `prompts.jsonl` (by `name`) into rows and row problems.

    Raises:
        TableError: the table cannot be read as a whole.
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark, as Excel writes "CSV UTF-8"
    if name.lower().endswith(".jsonl"):
        return _collect(JSONL_NAME, _jsonl_records(text))
    return _collect(CSV_NAME, _csv_records(text))


def _collect(name: str, records: Iterable[tuple[int, Mapping[str, object] | RowProblem]]) -> PromptTable:
    rows: list[PromptRow] = []
    problems: list[RowProblem] = []
    for line, record in records:
        got = record if isinstance(record, RowProblem) else _row(line, record)
        (problems if isinstance(got, RowProblem) else rows).append(got)  # type: ignore[arg-type]
    return PromptTable(name=name, rows=tuple(rows), problems=tuple(problems))


def _csv_records(text: str) -> Iterator[tuple[int, Mapping[str, object] | RowProblem]]:
    """Yield (line the record starts on, its cells by column) for each record after the header."""
    reader = csv.reader(text.splitlines(keepends=True), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise TableError(f"{CSV_NAME} is empty: its first line must name the columns, e.g. `file,prompt`")
        columns = [cell.strip().lower() for cell in header]
        _check_columns(CSV_NAME, columns)
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if len(cells) > len(columns):
                detail = f"{len(cells)} cells where the header names {len(columns)} columns"
                yield line, RowProblem(line=line, file=cells[0].strip(), code=BAD_ROW, detail=detail)
                continue
            yield line, dict(zip(columns, cells, strict=False))
    except csv.Error as exc:
        raise TableError(f"{CSV_NAME} line {reader.line_num} is not valid CSV ({exc})") from exc


def _check_columns(name: str, columns: Sequence[str]) -> None:
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise TableError(f"{name} has column(s) Peel does not know: {', '.join(unknown)} (use {', '.join(COLUMNS)})")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise TableError(f"{name} has no {' or '.join(missing)} column (it needs {', '.join(REQUIRED_COLUMNS)})")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise TableError(f"{name} names column(s) twice: {', '.join(repeated)}")


def _jsonl_records(text: str) -> Iterator[tuple[int, Mapping[str, object] | RowProblem]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            yield line, RowProblem(line=line, file="", code=BAD_ROW, detail="not a JSON object")
            continue
        if not isinstance(record, dict):
            yield line, RowProblem(line=line, file="", code=BAD_ROW, detail="not a JSON object")
            continue
        file = record.get("file")
        file_text = file if isinstance(file, str) else ""
        unknown = sorted(str(k) for k in record if k not in COLUMNS)
        if unknown:
            detail = f"key(s) Peel does not know: {', '.join(unknown)}"
            yield line, RowProblem(line=line, file=file_text, code=BAD_ROW, detail=detail)
            continue
        yield line, record


def _clean(value: str) -> str:
    """Return a cell as one line of text: controls dropped (bidirectional) or made spaces, runs of space folded."""
    return " ".join(strip_controls(value, replacement=" ").split())


def _text(record: Mapping[str, object], key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _BadValueError(f"{key} must be text")
    return _clean(str(value))


class _BadValueError(ValueError):
    """One value of a row is unusable; its message names it."""


def _row(line: int, record: Mapping[str, object]) -> PromptRow | RowProblem:
    file = ""
    try:
        file = normalise_name(_text(record, "file"))
        prompt = _text(record, "prompt")
        if not prompt:
            return RowProblem(line=line, file=file, code=EMPTY_PROMPT, detail="the prompt is empty")
        return PromptRow(
            line=line,
            file=file,
            prompt=prompt,
            negative=tuple(w.strip() for w in _text(record, "negative").split(",") if w.strip()),
            aspect_ratio=_aspect_ratio(_text(record, "aspect_ratio")),
            image_size=_image_size(_text(record, "image_size")),
            seed=_seed(record.get("seed")),
            refs=_refs(record.get("refs")),
        )
    except _BadValueError as exc:
        return RowProblem(line=line, file=file, code=BAD_VALUE, detail=str(exc))


def normalise_name(name: str) -> str:
    """Return a file name as the ZIP lists it: `/` separators, no leading `./`."""
    name = name.replace("\\", "/").strip()
    while name.startswith("./"):
        name = name[2:]
    return name


def _aspect_ratio(value: str) -> str | None:
    if not value:
        return None
    m = _RATIO.match(value)
    if m is None or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise _BadValueError(f"aspect_ratio {value!r} is not W:H, e.g. 16:9")
    reduced = Fraction(int(m.group(1)), int(m.group(2)))
    ratio = f"{reduced.numerator}:{reduced.denominator}"
    if ratio not in _ALL_RATIOS:
        raise _BadValueError(f"aspect_ratio {value} is not one Gemini makes ({', '.join(_ALL_RATIOS)})")
    return ratio


def _image_size(value: str) -> str | None:
    if not value:
        return None
    size = value.upper().replace("PX", "")
    if size not in IMAGE_SIZES:
        raise _BadValueError(f"image_size {value!r} is not one of {', '.join(IMAGE_SIZES)}")
    return size


def _seed(value: object) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text.isdigit() or int(text) > MAX_SEED:
        raise _BadValueError(f"seed {str(value)[:20]!r} is not a whole number from 0 to {MAX_SEED}")
    return int(text)


def _refs(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        parts: list[object] = list(_REF_SEPARATOR.split(value))
    elif isinstance(value, list):
        parts = value
    else:
        raise _BadValueError("refs must name images, separated by ; or |")
    if not all(isinstance(p, str) for p in parts):
        raise _BadValueError("refs must name images, separated by ; or |")
    return tuple(normalise_name(_clean(str(p))) for p in parts if str(p).strip())


# ---------------------------------------------------------------------------------------------------------------
# Deciding each item's prompt
# ---------------------------------------------------------------------------------------------------------------


def is_template(text: str) -> bool:
    """Tell whether the command's prompt fills in `{prompt}`, `{name}` or `{folder}` per image."""
    return _PLACEHOLDER.search(text) is not None


def fill(template: str, *, prompt: str, name: str, folder: str) -> str:
    """Return `template` with `{prompt}`, `{name}` and `{folder}` replaced (any other braces are kept as typed)."""
    values = {"prompt": prompt, "name": name, "folder": folder}
    return " ".join(_PLACEHOLDER.sub(lambda m: values[m.group(1)], template).split())


def _stem_key(name: str) -> str:
    """Return `folder/stem` of a file name: the key a caption and its image share."""
    head, slash, leaf = name.rpartition("/")
    dot = leaf.rfind(".")
    return f"{head}{slash}{leaf[:dot] if dot > 0 else leaf}"


def _folder_and_stem(name: str) -> tuple[str, str]:
    head, _, leaf = name.rpartition("/")
    dot = leaf.rfind(".")
    return head, leaf[:dot] if dot > 0 else leaf


@dataclass(slots=True)
class _Assigner:
    command: ParsedPrompt
    model: str
    images: Sequence[str]
    problems: list[RowProblem] = field(default_factory=list)

    def item(self, image: str | None, line: int | None, base: str | None, row: PromptRow | None) -> ItemPrompt | None:
        """Return the item for an image or a text row, or None after recording why it gives none."""
        folder, name = _folder_and_stem(image) if image else ("", "")
        where = image or ""
        template = self.command.text
        if is_template(template):
            if base is None and "{prompt}" in template:
                self._problem(line, where, NO_PROMPT, "the template uses {prompt}, but no row or caption gives one")
                return None
            text = fill(template, prompt=base or "", name=name, folder=folder)
        else:
            text = base if base is not None else template
        if not text:
            self._problem(line, where, NO_PROMPT, "no row or caption gives a prompt, and the command has none")
            return None
        item: ItemPrompt | None = ItemPrompt(image=image, line=line, text=text, negative=self.command.params.negative)
        if item is not None and row is not None:
            item = self._with_row(item, row)
        return None if item is None else self._checked(item)

    def _with_row(self, item: ItemPrompt, row: PromptRow) -> ItemPrompt | None:
        text, negative = item.text, (*item.negative, *row.negative)
        ratio, size, seed = row.aspect_ratio, row.image_size, row.seed
        if "--" in text or "\u2014" in text:  # the prompt may carry parameters of its own (`--ar 16:9`)
            parsed = parse_prompt(text)
            errors = list(parsed.errors)
            if parsed.params.model or parsed.params.grid_size or parsed.params.repeat:
                errors.append("--model, --n and --repeat apply to the whole batch, not to one row")
            if errors:
                self._problem(row.line, row.file, BAD_VALUE, "; ".join(errors))
                return None
            p = parsed.params
            text, negative = parsed.text, (*negative, *p.negative)
            ratio, size = ratio or p.aspect_ratio, size or p.image_size
            seed = seed if seed is not None else p.seed
        return replace(
            item, text=text, negative=negative, aspect_ratio=ratio, image_size=size, seed=seed, refs=row.refs
        )

    def _checked(self, item: ItemPrompt) -> ItemPrompt | None:
        where = item.image or ""
        if len(item.model_prompt()) > MAX_PROMPT_CHARS:
            self._problem(item.line, where, PROMPT_TOO_LONG, f"the prompt is over {MAX_PROMPT_CHARS:,} characters")
            return None
        references = (1 if item.image else 0) + len(item.refs)
        refusal = model_spec(self.model).check(
            references=references, aspect_ratio=item.aspect_ratio, image_size=item.image_size
        )
        if refusal is not None:
            self._problem(item.line, where, BAD_VALUE, refusal)
            return None
        return item

    def _problem(self, line: int | None, file: str, code: str, detail: str) -> None:
        self.problems.append(RowProblem(line=line, file=file, code=code, detail=detail))


def assign_prompts(
    *,
    command: ParsedPrompt,
    model: str,
    images: Sequence[str],
    table: PromptTable | None = None,
    captions: Mapping[str, str] | None = None,
) -> PromptPlan:
    """Decide every item's prompt: one per image of the ZIP (in ZIP order), then one per text-to-image row.

    Args:
        command: the command's prompt, parsed once (its text may be empty when the ZIP carries prompts).
        model: the job's model, whose limits each item's options and references are checked against.
        images: the accepted images' names in the ZIP, in ZIP order.
        table: the ZIP's `prompts.csv` / `prompts.jsonl`, read.
        captions: the ZIP's `.txt` files by name, with their text.
    """
    a = _Assigner(command=command, model=model, images=images)
    known = set(images)
    rows = _rows_by_image(table, known, a.problems) if table else {}
    text_rows = [r for r in table.rows if not r.file] if table else []
    used_captions: set[str] = set()
    caption_by_stem = {_stem_key(name): name for name in (captions or {})}
    referenced = {ref for row in rows.values() for ref in row.refs} | {ref for row in text_rows for ref in row.refs}

    items: list[ItemPrompt] = []
    for image in images:
        row = rows.get(image)
        caption_name = caption_by_stem.get(_stem_key(image))
        if row is None and image in referenced and caption_name is None:
            a._problem(None, image, REFERENCE_ONLY, "named in refs, with no row of its own: used as a reference only")
            continue
        base: str | None = row.prompt if row else None
        if base is None and caption_name is not None and captions is not None:
            base = _clean(captions[caption_name]) or None
        if caption_name is not None:
            used_captions.add(caption_name)
        item = a.item(image, row.line if row else None, base, row)
        if item is not None and _refs_known(item, known, a):
            items.append(item)
    for row in text_rows:
        item = a.item(None, row.line, row.prompt, row)
        if item is not None and _refs_known(item, known, a):
            items.append(item)
    for name in sorted(set(captions or {}) - used_captions):
        a._problem(None, name, CAPTION_WITHOUT_IMAGE, "a .txt caption with no image of the same name beside it")
    problems = sorted(a.problems, key=lambda p: (p.line is None, p.line or 0))
    return PromptPlan(
        items=tuple(items),
        problems=tuple(problems),
        source=_source(command, table, len(used_captions)),
        table=table.name if table else CSV_NAME,
    )


def _rows_by_image(table: PromptTable, known: set[str], problems: list[RowProblem]) -> dict[str, PromptRow]:
    problems.extend(table.problems)
    rows: dict[str, PromptRow] = {}
    for row in table.rows:
        if not row.file:
            continue
        if row.file not in known:
            detail = f"{row.file} is not an image Peel took from the ZIP"
            problems.append(RowProblem(line=row.line, file=row.file, code=MISSING_FILE, detail=detail))
        elif row.file in rows:
            detail = f"{row.file} already has a row, on line {rows[row.file].line}"
            problems.append(RowProblem(line=row.line, file=row.file, code=DUPLICATE, detail=detail))
        else:
            rows[row.file] = row
    return rows


def _refs_known(item: ItemPrompt, known: set[str], a: _Assigner) -> bool:
    missing = [ref for ref in item.refs if ref not in known]
    if missing:
        a._problem(item.line, item.image or "", MISSING_FILE, f"refs name no image of the ZIP: {', '.join(missing)}")
    return not missing


def _source(command: ParsedPrompt, table: PromptTable | None, captions: int) -> str:
    parts = []
    if table is not None:
        rows = len(table.rows) + len(table.problems)
        parts.append(f"{table.name}: {rows} row{'' if rows == 1 else 's'}")
    if captions:
        parts.append(f"captions: {captions}")
    if is_template(command.text):
        parts.append("template")
    return " + ".join(parts) or "one prompt"


__all__ = [
    "CSV_NAME",
    "JSONL_NAME",
    "TABLE_NAMES",
    "ItemPrompt",
    "PromptPlan",
    "PromptRow",
    "PromptTable",
    "RowProblem",
    "TableError",
    "assign_prompts",
    "fill",
    "is_template",
    "normalise_name",
    "parse_table",
    "table_name",
]
