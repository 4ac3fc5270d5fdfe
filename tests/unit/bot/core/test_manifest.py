import csv
import io
import json
from datetime import UTC, datetime

import pytest

from bot.core import models
from bot.core.item_errors import NOT_MADE
from bot.core.manifest import (
    CSV_COLUMNS,
    ItemStatus,
    ManifestHeader,
    ManifestRow,
    assign_output_names,
    count_statuses,
    group_member_stem,
    guard_cell,
    image_origin,
    item_row,
    prompt_name,
    prompt_slug,
    render_csv,
    render_json,
    safe_stem,
    skipped_rows,
)
from tests.fakes.models import batch_job

CREATED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HEADER = ManifestHeader(job_id="j_42", prompt="a cat, watercolor", model="gemini-2.5-flash-image", created_at=CREATED)


BATCH_JOB = batch_job()


def make_row(index: int, **overrides: object) -> ManifestRow:
    fields: dict[str, object] = {
        "index": index,
        "status": ItemStatus.OK,
        "prompt": "a cat, watercolor",
        "model": "gemini-2.5-flash-image",
        "source_name": f"in/{index}.jpg",
        "seed": index * 10,
        "output_key": f"outputs/j_42/{index:05d}.png",
    }
    fields.update(overrides)
    return ManifestRow(**fields)  # type: ignore[arg-type]  # a test factory of keyword fields


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("photos/Cat 01.JPG", "Cat 01"),
        ("..\\..\\evil.png", "evil"),
        ("a<b>:c.png", "a_b__c"),
        (".hidden", "hidden"),
        ("archive.tar.gz", "archive.tar"),
        (" spaced. .png", "spaced"),
        ("con.png", "_con"),
        ("dir/", ""),
        ("...", ""),
        (None, ""),
        ("tab\there.png", "tab_here"),
        ("e\u0301.png", "\u00e9"),
        ("invoice\u202egnp.exe", "invoicegnp"),
    ],
)
def test_safe_stem_cleans_name_when_it_comes_from_an_upload(name: str | None, stem: str) -> None:
    assert safe_stem(name) == stem


def test_assign_output_names_keeps_the_inputs_folders_and_names_when_rows_have_files() -> None:
    rows = [
        make_row(0, source_name="set/part1/img_0001.jpg"),
        make_row(1, source_name="set/part2/img_0001.webp"),
        make_row(2, source_name="set/part1/IMG_0001.png"),  # the same name as item 0 once both are .png
        make_row(3, source_name=None, prompt="A red fox, in the snow!"),
        make_row(4, source_name="../"),
        make_row(5, status=ItemStatus.ERROR, error_code="SAFETY", output_key=None),
        make_row(6, output_name="chosen name.png"),
        make_row(7, source_name="cat.png"),
        make_row(8, source_name="cat.png"),  # one input made twice (--repeat, permutations)
    ]
    names = [row.output_name for row in assign_output_names(rows)]
    assert names == [
        "set/part1/img_0001.png",
        "set/part2/img_0001.png",
        "set/part1/IMG_0001 (2).png",
        "a-red-fox-in-the-snow-00004.png",
        "a-cat-watercolor-00005.png",
        None,
        "chosen name.png",
        "cat.png",
        "cat (2).png",
    ]
    assert names == [row.output_name for row in assign_output_names(rows)]  # deterministic


@pytest.mark.parametrize(
    ("source", "member"),
    [
        ("../../etc/passwd.jpg", "etc/passwd.png"),
        ("/abs/x.jpg", "abs/x.png"),
        ("C:\\in\\aux.jpg", "C_/in/_aux.png"),
        ("con/nul.tar.jpg", "_con/_nul.tar.png"),
        ("a<b>/c?.jpg", "a_b_/c_.png"),
        ("tab\tdir/x\u0085.jpg", "tab_dir/x_.png"),
        ("dots.../ end. .jpg", "dots/end.png"),
        ("x/.hidden", "x/hidden.png"),
    ],
)
def test_assign_output_names_makes_every_member_safe_to_extract_when_source_names_are_hostile(
    source: str, member: str
) -> None:
    assert assign_output_names([make_row(0, source_name=source)])[0].output_name == member


@pytest.mark.parametrize(
    ("prompt", "slug"),
    [
        ("A red fox, in the snow!", "a-red-fox-in-the-snow"),
        ("  __--!!  ", ""),
        ("Ünïcode café 猫", "ünïcode-café-猫"),
        ("../../x\u202e\ty", "x-y"),
        ("word " * 20, "word-word-word-word-word-word-word-word"),
        ("x" * 50, "x" * 40),
    ],
)
def test_prompt_slug_gives_a_short_file_stem_when_prompts_vary(prompt: str, slug: str) -> None:
    assert prompt_slug(prompt) == slug


def test_prompt_name_tags_the_slug_and_falls_back_to_image_when_the_prompt_has_no_word() -> None:
    assert prompt_name("A fox", "3f9a0c") == "a-fox-3f9a0c"
    assert prompt_name("?!", "00001") == "image-00001"


def test_assign_output_names_drops_bidi_controls_when_source_names_hold_them() -> None:
    rows = [make_row(0, source_name="x/invoice\u202egnp.exe"), make_row(1, output_name="cat\u2066\u200f.png")]
    assert [row.output_name for row in assign_output_names(rows)] == ["x/invoicegnp.png", "cat.png"]


def test_assign_output_names_avoids_reserved_names_when_given() -> None:
    rows = [make_row(0, source_name="manifest.json", output_key="outputs/j/00000.json")]
    assert assign_output_names(rows, reserved=["manifest.json"])[0].output_name == "manifest (2).json"


def test_assign_output_names_drops_name_when_row_has_no_file() -> None:
    rows = [make_row(0, status=ItemStatus.CANCELLED, output_name="stale.png")]
    assert assign_output_names(rows)[0].output_name is None


@pytest.mark.parametrize(
    ("value", "guarded"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("a = b", "a = b"),
        ("", ""),
    ],
)
def test_guard_cell_prefixes_quote_when_cell_starts_a_formula(value: str, guarded: str) -> None:
    assert guard_cell(value) == guarded


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_render_csv_quotes_and_guards_cells_when_text_is_hostile() -> None:
    rows = assign_output_names(
        [
            make_row(0, prompt='say "hi", then\nnewline', source_name="=cmd|calc.png"),
            make_row(
                1,
                status=ItemStatus.ERROR,
                output_key=None,
                seed=None,
                error_code="SAFETY",
                error_reason="-blocked: IMAGE_SAFETY",
                prompt="@evil",
                aspect_ratio="16:9",
                image_size="2K",
            ),
        ]
    )
    text = render_csv(rows)
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
    parsed = parse_csv(text)
    assert parsed[0]["prompt"] == 'say "hi", then\nnewline'
    assert parsed[0]["source"] == "'=cmd|calc.png"
    assert rows[0].output_name == "=cmd_calc.png"
    assert parsed[0]["file"] == "'=cmd_calc.png"  # the member keeps its name; only the cell is guarded
    assert parsed[0]["seed"] == "0"
    assert (parsed[0]["aspect_ratio"], parsed[0]["image_size"]) == ("", "")
    assert parsed[1] == {
        "index": "1",
        "source": "in/1.jpg",
        "status": "error",
        "error_code": "SAFETY",
        "error_reason": "'-blocked: IMAGE_SAFETY",
        "file": "",
        "seed": "",
        "model": "gemini-2.5-flash-image",
        "prompt": "'@evil",
        "aspect_ratio": "16:9",
        "image_size": "2K",
        "mode": "fast",
    }


def test_render_json_reports_summary_and_items_when_rows_mix_statuses() -> None:
    rows = assign_output_names(
        [
            make_row(0),
            make_row(
                1,
                status=ItemStatus.ERROR,
                output_key=None,
                error_code="UPSTREAM",
                error_reason="503",
                aspect_ratio="4:3",
            ),
            make_row(2, status=ItemStatus.CANCELLED, output_key=None),
            make_row(3, status=ItemStatus.SKIPPED, output_key=None, prompt="=1+1 ☕"),
        ]
    )
    document = json.loads(render_json(HEADER, rows))
    assert document["job_id"] == "j_42"
    assert document["prompt"] == "a cat, watercolor"
    assert document["model"] == "gemini-2.5-flash-image"
    assert document["created"] == "2025-06-01T12:00:00+00:00"
    assert document["counts"] == {"ok": 1, "error": 1, "cancelled": 1, "skipped": 1, "total": 4}
    assert document["items"][0]["file"] == "in/0.png"
    assert (document["items"][0]["aspect_ratio"], document["items"][0]["image_size"]) == (None, None)
    assert document["items"][1] == {
        "index": 1,
        "source": "in/1.jpg",
        "status": "error",
        "error_code": "UPSTREAM",
        "error_reason": "503",
        "file": None,
        "seed": 10,
        "model": "gemini-2.5-flash-image",
        "prompt": "a cat, watercolor",
        "aspect_ratio": "4:3",
        "image_size": None,
        "mode": "fast",
    }
    assert document["items"][3]["prompt"] == "=1+1 ☕"  # JSON keeps the exact text


def test_count_statuses_lists_every_status_when_rows_are_empty() -> None:
    assert count_statuses([]) == {"ok": 0, "error": 0, "cancelled": 0, "skipped": 0, "total": 0}


def test_item_row_reports_each_ledger_state_when_an_item_is_made_failed_cancelled_or_unfinished() -> None:
    job = BATCH_JOB

    def item(index: int, status: models.ItemStatus, code: str | None = None, message: str | None = None) -> ManifestRow:
        return item_row(
            job,
            models.Item(
                job_id=job.id,
                index=index,
                inputs=models.ItemInputs(source_name=f"in/{index}.png"),
                prompt=None,
                seed=7 + index,
                output_key=f"outputs/j_1/{index:05d}.png",
                status=status,
                attempts=1,
                error_code=code,
                error_message=message,
                retry_at=None,
                chunk_id=None,
                width=None,
                height=None,
            ),
        )

    made = item(0, models.ItemStatus.OK)
    safety = item(1, models.ItemStatus.ERROR, "SAFETY", "IMAGE_SAFETY")
    cancelled = item(2, models.ItemStatus.CANCELLED)
    pending = item(3, models.ItemStatus.PENDING)
    # A RunPod error forwarded as the item's message, quoting an exception, and a code the table does not know.
    leaky = item(4, models.ItemStatus.ERROR, None, "Cannot connect to host 10.0.0.7:8443 ssl:<SSLContext at 0x7f>")
    odd = item(5, models.ItemStatus.ERROR, "SOMETHING_NEW", "boom: <object at 0x1>")

    assert (made.status, made.output_key, made.error_code, made.seed) == (
        ItemStatus.OK,
        "outputs/j_1/00000.png",
        None,
        7,
    )
    assert (made.prompt, made.model, made.source_name) == ("make it blue", "gemini-2.5-flash-image", "in/0.png")
    assert (safety.status, safety.output_key, safety.error_code, safety.error_reason) == (
        ItemStatus.ERROR,
        None,
        "SAFETY",
        "Blocked by Gemini's safety filters.",  # the code's message, not the worker's
    )
    assert (cancelled.status, cancelled.error_code, cancelled.output_key) == (ItemStatus.CANCELLED, None, None)
    assert (pending.status, pending.error_code, pending.error_reason) == (ItemStatus.ERROR, NOT_MADE, "not finished")
    assert (leaky.error_code, leaky.error_reason) == (NOT_MADE, "The image was not made.")
    assert (odd.error_code, odd.error_reason) == ("SOMETHING_NEW", "The image was not made.")


def test_skipped_rows_follow_the_items_when_intake_skipped_entries() -> None:
    rows = list(skipped_rows(BATCH_JOB, [("notes.txt", "not_an_image"), ("../x.png", "odd_new_reason")]))

    assert [(r.index, r.status, r.source_name, r.error_code) for r in rows] == [
        (4, ItemStatus.SKIPPED, "notes.txt", "not_an_image"),
        (5, ItemStatus.SKIPPED, "../x.png", "odd_new_reason"),
    ]
    assert [r.error_reason for r in rows] == ["skipped by intake: not an image", "skipped by intake: odd new reason"]
    assert all(r.output_key is None and r.model == "gemini-2.5-flash-image" for r in rows)
    assert all(r.prompt == "" for r in rows)  # nothing was made from a skipped entry


def test_a_prompt_rows_problem_is_its_skipped_rows_reason() -> None:
    where = "prompts.csv line 12 (set/missing.png)"
    skipped = [(where, "row_missing_file"), ("notes.txt", "not_an_image")]
    rows = list(skipped_rows(BATCH_JOB, skipped, {where: "set/missing.png is not an image Peel took from the ZIP"}))

    assert [r.error_reason for r in rows] == [
        "skipped: set/missing.png is not an image Peel took from the ZIP",
        "skipped by intake: not an image",
    ]


def test_item_row_reports_the_items_own_options_when_it_has_them_else_the_jobs() -> None:
    job = batch_job(params=models.JobParams(model="gemini-2.5-flash-image", aspect_ratio="1:1", image_size="1K"))

    def row(inputs: models.ItemInputs) -> ManifestRow:
        item = models.Item(
            job_id=job.id,
            index=0,
            inputs=inputs,
            prompt="its own prompt",
            seed=5,
            output_key="outputs/j_1/00000.png",
            status=models.ItemStatus.OK,
            attempts=1,
            error_code=None,
            error_message=None,
            retry_at=None,
            chunk_id=None,
            width=None,
            height=None,
        )
        return item_row(job, item)

    own = row(models.ItemInputs(source_name="a.png", aspect_ratio="16:9", image_size="2K"))
    inherited = row(models.ItemInputs(source_name="a.png"))
    assert (own.prompt, own.seed, own.aspect_ratio, own.image_size) == ("its own prompt", 5, "16:9", "2K")
    assert (inherited.aspect_ratio, inherited.image_size) == ("1:1", "1K")
    assert next(iter(skipped_rows(job, [("x.txt", "not_an_image")]))).aspect_ratio == "1:1"


def test_every_row_of_a_relax_job_says_relax_and_a_fast_jobs_say_fast() -> None:
    relax = batch_job(params=models.JobParams(model="gemini-2.5-flash-image", relax=True))
    fast = batch_job(params=models.JobParams(model="gemini-2.5-flash-image"))
    item = models.Item(
        job_id=relax.id, index=0, inputs=models.ItemInputs(source_name="a.png"), prompt=None, seed=5,
        output_key="outputs/j_1/00000.png", status=models.ItemStatus.OK, attempts=1, error_code=None,
        error_message=None, retry_at=None, chunk_id=None, width=None, height=None,
    )  # fmt: skip

    assert item_row(relax, item).mode == "relax" and item_row(fast, item).mode == "fast"
    assert next(iter(skipped_rows(relax, [("x.txt", "not_an_image")]))).mode == "relax"
    assert parse_csv(render_csv([item_row(relax, item)]))[0]["mode"] == "relax"
    assert json.loads(render_json(HEADER, [item_row(relax, item)]))["items"][0]["mode"] == "relax"


def test_group_member_stem_names_an_image_after_its_input_else_its_prompt_with_a_short_id() -> None:
    assert group_member_stem(source_name="set/a/Cat.JPG", prompt="p", job_id="j_3f9a0c1d2e4b5a69", index=16) == (
        "Cat-3f9a0c-17"
    )
    assert group_member_stem(source_name=None, prompt="A red fox!", job_id="j_9b1e22aa", index=1) == (
        "a-red-fox-9b1e22-2"
    )
    assert group_member_stem(source_name="../", prompt="??", job_id="j_9b1e22aa", index=0) == "image-9b1e22-1"
    assert image_origin("upscale", "j_9b1e22aa", 0) == "upscale j_9b1e22aa #1"
