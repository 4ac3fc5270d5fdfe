"""A prompt per image: the table, captions, the template, and the rows that give no item (with their lines)."""

import pytest

from bot.core.params import parse_prompt
from bot.core.prompt_table import (
    BAD_ROW,
    BAD_VALUE,
    CAPTION_WITHOUT_IMAGE,
    DUPLICATE,
    EMPTY_PROMPT,
    MISSING_FILE,
    NO_PROMPT,
    PROMPT_TOO_LONG,
    REFERENCE_ONLY,
    TableError,
    assign_prompts,
    parse_table,
)
from worker.contract import MAX_PROMPT_CHARS

FLASH = "gemini-2.5-flash-image"
FLASH3 = "gemini-3.1-flash-image"


def test_csv_rows_keep_their_line_numbers_and_bad_rows_are_problems_of_their_own() -> None:
    text = (
        "\ufefffile,prompt,aspect_ratio,image_size,seed,refs,negative\n"
        "a.png,a red fox,16:9,2K,7,b.png;c.png,trees\n"
        '"b.png","a ""quoted""\nprompt over two lines",,,,,\n'
        "\n"
        "c.png,,,,,,\n"
        "d.png,ok,7:3,,,,\n"
        "e.png,ok,,9K,,,\n"
        "f.png,ok,,,-1,,\n"
        "g.png,ok,,,,,,extra\n"
    )
    table = parse_table("prompts.csv", text)

    assert [(r.line, r.file, r.prompt) for r in table.rows] == [
        (2, "a.png", "a red fox"),
        (3, "b.png", 'a "quoted" prompt over two lines'),
    ]
    first = table.rows[0]
    assert (first.aspect_ratio, first.image_size, first.seed, first.refs, first.negative) == (
        "16:9",
        "2K",
        7,
        ("b.png", "c.png"),
        ("trees",),
    )
    assert [(p.line, p.file, p.code) for p in table.problems] == [
        (6, "c.png", EMPTY_PROMPT),
        (7, "d.png", BAD_VALUE),
        (8, "e.png", BAD_VALUE),
        (9, "f.png", BAD_VALUE),
        (10, "g.png", BAD_ROW),
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("file,promt\na.png,x\n", "promt"),
        ("file\na.png\n", "no prompt column"),
        ("file,prompt,prompt\n", "twice"),
    ],
)
def test_a_table_peel_cannot_read_as_a_whole_is_refused_naming_why(text: str, match: str) -> None:
    with pytest.raises(TableError, match=match):
        parse_table("prompts.csv", text)


def test_jsonl_rows_take_the_same_keys_and_a_bad_line_is_only_that_line() -> None:
    text = (
        '{"file": "a.png", "prompt": "one", "seed": 3, "refs": ["b.png"]}\n'
        "not json\n"
        '{"file": "b.png", "prompt": "two", "colour": "red"}\n'
        '{"file": "", "prompt": "a text-to-image row"}\n'
    )
    table = parse_table("prompts.jsonl", text)
    assert [(r.line, r.file, r.seed, r.refs) for r in table.rows] == [(1, "a.png", 3, ("b.png",)), (4, "", None, ())]
    assert [(p.line, p.code) for p in table.problems] == [(2, BAD_ROW), (3, BAD_ROW)]


def test_a_row_wins_over_a_caption_which_wins_over_the_command_prompt() -> None:
    table = parse_table("prompts.csv", "file,prompt\nset/a.png,from the row\n")
    plan = assign_prompts(
        command=parse_prompt("the default --ar 3:2"),
        model=FLASH,
        images=["set/a.png", "set/b.png", "c.png"],
        table=table,
        captions={"set/a.txt": "caption a", "set/b.txt": "caption\nof b"},
    )
    assert [(i.image, i.text) for i in plan.items] == [
        ("set/a.png", "from the row"),
        ("set/b.png", "caption of b"),
        ("c.png", "the default"),
    ]
    assert plan.source == "prompts.csv: 1 row + captions: 2"
    assert plan.problems == ()


def test_a_template_fills_in_prompt_name_and_folder_and_keeps_other_braces() -> None:
    plan = assign_prompts(
        command=parse_prompt("{name} from {folder}: {prompt} {style}"),
        model=FLASH,
        images=["set/part1/img_0001.png"],
        captions={"set/part1/img_0001.txt": "a cat"},
    )
    assert [i.text for i in plan.items] == ["img_0001 from set/part1: a cat {style}"]
    assert plan.source == "captions: 1 + template"


def test_an_image_with_no_prompt_anywhere_is_a_problem_not_an_empty_prompt() -> None:
    table = parse_table("prompts.csv", "file,prompt\na.png,x\n")
    plan = assign_prompts(command=parse_prompt(""), model=FLASH, images=["a.png", "b.png"], table=table)
    assert [i.image for i in plan.items] == ["a.png"]
    assert [(p.file, p.code) for p in plan.problems] == [("b.png", NO_PROMPT)]
    templated = assign_prompts(command=parse_prompt("in the style of {prompt}"), model=FLASH, images=["a.png"])
    assert [(p.file, p.code) for p in templated.problems] == [("a.png", NO_PROMPT)]


def test_rows_naming_missing_or_repeated_files_are_reported_with_their_lines() -> None:
    table = parse_table("prompts.csv", "file,prompt,refs\na.png,x,\nnope.png,y,\na.png,z,\nb.png,w,ghost.png\n")
    plan = assign_prompts(command=parse_prompt("default"), model=FLASH, images=["a.png", "b.png"], table=table)
    assert [(i.image, i.text) for i in plan.items] == [("a.png", "x")]
    assert [(p.line, p.code) for p in plan.problems] == [(3, MISSING_FILE), (4, DUPLICATE), (5, MISSING_FILE)]
    assert plan.problems[0].where("prompts.csv") == "prompts.csv line 3 (nope.png)"


def test_a_prompt_list_without_images_is_a_text_to_image_batch_whose_refs_are_not_items() -> None:
    table = parse_table("prompts.csv", "file,prompt,refs\n,a fox,style.png\n,an owl,\n")
    plan = assign_prompts(command=parse_prompt(""), model=FLASH, images=["style.png"], table=table)
    assert [(i.image, i.line, i.text, i.refs) for i in plan.items] == [
        (None, 2, "a fox", ("style.png",)),
        (None, 3, "an owl", ()),
    ]
    assert [(p.file, p.code) for p in plan.problems] == [("style.png", REFERENCE_ONLY)]


def test_options_are_checked_against_the_model_and_the_prompt_against_the_contract() -> None:
    long = "x" * (MAX_PROMPT_CHARS + 1)
    table = parse_table(
        "prompts.csv",
        f"file,prompt,aspect_ratio,image_size\na.png,ok,1:8,\nb.png,ok,,2K\nc.png,{long},,\nd.png,ok,16:9,\n",
    )
    images = ["a.png", "b.png", "c.png", "d.png"]
    flash = assign_prompts(command=parse_prompt(""), model=FLASH, images=images, table=table)
    assert [(p.line, p.code) for p in flash.problems] == [(2, BAD_VALUE), (3, BAD_VALUE), (4, PROMPT_TOO_LONG)]
    assert [(i.image, i.aspect_ratio) for i in flash.items] == [("d.png", "16:9")]
    flash3 = assign_prompts(command=parse_prompt(""), model=FLASH3, images=images, table=table)
    assert [i.image for i in flash3.items] == ["a.png", "b.png", "d.png"]


def test_negatives_and_inline_parameters_of_a_row_go_into_the_model_prompt_and_options() -> None:
    table = parse_table(
        "prompts.csv", "file,prompt,negative\na.png,a fox --ar 16:9 --seed 4,snow\nb.png,a dog --model pro,\n"
    )
    plan = assign_prompts(command=parse_prompt("x --no trees"), model=FLASH, images=["a.png", "b.png"], table=table)
    (item,) = plan.items
    assert (item.text, item.aspect_ratio, item.seed) == ("a fox", "16:9", 4)
    assert item.model_prompt() == "a fox. Do not include: trees, snow."
    assert [(p.line, p.code) for p in plan.problems] == [(3, BAD_VALUE)]


def test_a_caption_without_its_image_is_reported() -> None:
    plan = assign_prompts(command=parse_prompt("p"), model=FLASH, images=["a.png"], captions={"notes.txt": "hi"})
    assert [(p.line, p.file, p.code) for p in plan.problems] == [(None, "notes.txt", CAPTION_WITHOUT_IMAGE)]
