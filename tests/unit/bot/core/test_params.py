"""Inline prompt parameters, as Midjourney users type them."""

import pytest

from bot.core.params import MAX_REPEAT, PromptParams, parse_prompt, repeat_seeds, resolve_model, snap_aspect_ratio


def test_plain_prompt_has_no_params_when_none_given() -> None:
    parsed = parse_prompt("  a red   fox  ")
    assert parsed.ok
    assert parsed.text == "a red fox"
    assert parsed.params == PromptParams()
    assert parsed.model_prompt() == "a red fox"


def test_every_parameter_is_read_when_given_together() -> None:
    parsed = parse_prompt("a fox --ar 16:9 --seed 7 --no trees, people --model pro --size 2k --n 2")
    assert parsed.ok, parsed.errors
    assert parsed.text == "a fox"
    assert parsed.params == PromptParams(
        model="gemini-3-pro-image-preview",
        aspect_ratio="16:9",
        image_size="2K",
        seed=7,
        grid_size=2,
        negative=("trees", "people"),
    )
    assert parsed.model_prompt() == "a fox. Do not include: trees, people."
    assert parsed.display() == (
        "a fox --ar 16:9 --model gemini-3-pro-image-preview --size 2K --seed 7 --n 2 --no trees, people"
    )


def test_em_dash_counts_as_double_dash_when_autocorrected() -> None:
    assert parse_prompt("a fox —ar 3:2").params.aspect_ratio == "3:2"


def test_hyphenated_words_stay_in_the_prompt_when_not_parameters() -> None:
    parsed = parse_prompt("a state-of-the-art -well lit room")
    assert parsed.ok
    assert parsed.text == "a state-of-the-art -well lit room"


@pytest.mark.parametrize(
    ("given", "snapped"),
    [
        ("2:1", "16:9"),
        ("3:1", "21:9"),
        ("1:2", "9:16"),
        ("7:5", "4:3"),
        ("32:18", "16:9"),
        ("1000:1000", "1:1"),
        ("5:4", "5:4"),
    ],
)
def test_aspect_ratio_is_snapped_to_the_nearest_when_gemini_lacks_it(given: str, snapped: str) -> None:
    parsed = parse_prompt(f"a fox --ar {given}")
    assert parsed.ok
    assert parsed.params.aspect_ratio == snapped
    w, h = given.split(":")
    from fractions import Fraction

    reduced = Fraction(int(w), int(h))
    exact = f"{reduced.numerator}:{reduced.denominator}"
    assert bool(parsed.notes) == (exact != snapped)


def test_snap_is_symmetric_when_ratio_is_inverted() -> None:
    assert snap_aspect_ratio(3, 1) == "21:9"
    assert snap_aspect_ratio(1, 3) == "9:16"


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        ("a fox --ar wide", "--ar wide"),
        ("a fox --ar 0:1", "--ar 0:1"),
        ("a fox --seed -3", "--seed"),
        ("a fox --seed 99999999999", "--seed 99999999999"),
        ("a fox --model dalle", "--model dalle"),
        ("a fox --size 8K", "--size 8K"),
        ("a fox --n 3", "--n 3"),
        ("a fox --stylish 100", "--stylish"),
        ("a fox --seed", "--seed` needs a value"),
        ("a fox --seed 1 --seed 2", "given twice"),
        ("--ar 1:1", "prompt is empty"),
        ("a fox --no ,", "--no"),
    ],
)
def test_error_names_the_parameter_when_malformed(prompt: str, needle: str) -> None:
    parsed = parse_prompt(prompt)
    assert not parsed.ok
    assert any(needle in e for e in parsed.errors), parsed.errors


def test_all_errors_are_reported_when_several_are_wrong() -> None:
    parsed = parse_prompt("a fox --ar x --kaos 5 --n 9")
    assert len(parsed.errors) == 3


def test_repeated_no_accumulates_when_given_twice() -> None:
    assert parse_prompt("a fox --no cats --no dogs").params.negative == ("cats", "dogs")


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("flash", "gemini-2.5-flash-image"),
        ("PRO", "gemini-3-pro-image-preview"),
        ("models/gemini-3.1-flash-image", "gemini-3.1-flash-image"),
        ("gemini-9-ultra-image", "gemini-9-ultra-image"),
        ("gpt-image", None),
    ],
)
def test_model_is_resolved_when_alias_or_full_name(name: str, model: str | None) -> None:
    assert resolve_model(name) == model


def test_defaults_fill_unset_params_when_merged() -> None:
    given = PromptParams(aspect_ratio="16:9", seed=0)
    defaults = PromptParams(model="m", aspect_ratio="1:1", image_size="1K", seed=5, grid_size=4, negative=("x",))
    merged = given.merged_over(defaults)
    assert merged == PromptParams(model="m", aspect_ratio="16:9", image_size="1K", seed=0, grid_size=4, negative=("x",))


@pytest.mark.parametrize("flag", ["ar", "seed", "model", "size", "n"])
def test_error_quotes_the_value_as_typed_when_it_holds_a_backtick_and_a_masked_link(flag: str) -> None:
    parsed = parse_prompt(f"a fox --{flag} x` [free nitro](https://evil.example) `y")
    [error] = parsed.errors
    span = error[: error.index("`:") + 1]  # the quoted input is one code span, closed only by Peel's backtick
    assert span.count("`") == 2 and span.startswith(f"`--{flag} x'") and "[free nitro](https://evil.example)" in span


def test_repeat_is_parsed_and_capped() -> None:
    parsed = parse_prompt("a fox --repeat 3 --seed 7")
    assert parsed.ok and parsed.params.repeat == 3 and parsed.display() == "a fox --seed 7 --repeat 3"
    assert parse_prompt("a fox --r 2").params.repeat == 2
    for bad in ("0", str(MAX_REPEAT + 1), "x"):
        assert parse_prompt(f"a fox --repeat {bad}").errors == (f"`--repeat {bad}`: run the prompt 1 to 40 times",)
    assert repeat_seeds(7, 3) == (7, 8, 9)
    assert repeat_seeds(None, 2) == (None, None)


def test_midjourney_parameters_are_left_out_and_named_when_gemini_has_no_equivalent() -> None:
    parsed = parse_prompt("a cat --v 6 --stylize 250 --ar 3:2")
    assert parsed.ok, parsed.errors
    assert parsed.text == "a cat"
    assert parsed.params == PromptParams(aspect_ratio="3:2")
    assert parsed.notes == ("Ignored Midjourney parameters: --v 6, --stylize 250 (Gemini has no equivalent)",)
    assert parsed.model_prompt() == "a cat"


@pytest.mark.parametrize(
    "typed",
    [
        "--chaos 40",
        "--c 40",
        "--weird 100",
        "--w 5",
        "--q 2",
        "--quality 1",
        "--style raw",
        "--tile",
        "--niji 6",
        "--iw 1.5",
        "--cw 50",
        "--sw 200",
        "--sv 4",
        "--stop 80",
        "--video",
        "--draft",
        "--personalize",
        "--p",
        "--raw",
        "--public",
        "--stealth",
        "--version 7",
        "--s 750",
    ],
)
def test_each_midjourney_parameter_is_ignored_with_its_value_when_typed(typed: str) -> None:
    parsed = parse_prompt(f"a fox {typed} --seed 3")
    assert parsed.ok, parsed.errors
    assert (parsed.text, parsed.params.seed) == ("a fox", 3)
    assert parsed.notes == (f"Ignored Midjourney parameters: {typed} (Gemini has no equivalent)",)


def test_speed_parameters_say_where_speed_is_chosen_when_typed_in_a_prompt() -> None:
    parsed = parse_prompt("a fox --relax --tile")
    assert parsed.ok
    assert parsed.notes == (
        "Ignored Midjourney parameters: --relax (interactive images always run fast; a batch's speed is"
        " `/batch speed:`); --tile (Gemini has no equivalent)",
    )


def test_a_parameter_neither_peel_nor_midjourney_has_is_still_refused_when_typed() -> None:
    parsed = parse_prompt("a fox --sed 5 --v 6")
    assert not parsed.ok
    assert parsed.errors == ("`--sed` is not a parameter Peel knows (did you mean `--seed`?)",)
    far = parse_prompt("a fox --zzzq 5")
    assert far.errors == (
        "`--zzzq` is not a parameter Peel knows (use --ar, --seed, --no, --model, --size, --n, --repeat)",
    )


def test_peel_s_own_parameters_keep_their_meaning_beside_ignored_ones() -> None:
    parsed = parse_prompt("a fox --no trees --stylize 100 --repeat 2 --seed 9")
    assert parsed.params == PromptParams(negative=("trees",), repeat=2, seed=9)
