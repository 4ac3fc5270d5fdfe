"""`/prefer suffix` and `/prefer option set`: how a user's saved options and suffix rewrite a prompt."""

import pytest

from bot.core import params as params_module
from bot.core.params import parse_prompt
from bot.core.prefer import (
    MAX_OPTION_CHARS,
    MAX_SUFFIX_CHARS,
    RESERVED_NAMES,
    PreferError,
    PromptPrefs,
    apply_suffix,
    check_name,
    check_options,
    check_suffix,
    expand_options,
    personalize,
)

WIDE = {"wide": "--ar 16:9 --model pro"}


def test_a_saved_set_expands_in_place_when_named_in_the_prompt() -> None:
    assert expand_options("a fox --wide --seed 3", WIDE) == "a fox --ar 16:9 --model pro --seed 3"
    parsed = parse_prompt(expand_options("a fox --wide", WIDE))
    assert parsed.ok and (parsed.params.aspect_ratio, parsed.params.model) == ("16:9", "gemini-3-pro-image-preview")


def test_a_set_name_is_matched_whole_and_case_blind_when_expanded() -> None:
    assert expand_options("a fox --WIDE", WIDE) == "a fox --ar 16:9 --model pro"
    assert expand_options("a fox --widescreen", WIDE) == "a fox --widescreen"  # another name: left alone
    assert expand_options("a fox—wide", WIDE) == "a fox—wide"  # not a parameter: a word


def test_an_unknown_name_is_left_for_the_parser_when_no_set_has_it() -> None:
    assert expand_options("a fox --tall", WIDE) == "a fox --tall"
    assert not parse_prompt(expand_options("a fox --tall", WIDE)).params.aspect_ratio


def test_a_set_never_expands_another_when_its_value_names_one() -> None:
    sets = {"a": "--b", "b": "--ar 2:1"}
    assert expand_options("x --a", sets) == "x --b"


def test_a_parameter_name_is_never_expanded_when_a_stored_set_shadows_it() -> None:
    assert expand_options("x --ar 1:1", {"ar": "--ar 16:9"}) == "x --ar 1:1"


@pytest.mark.parametrize("name", ["ar", "--seed", "v", "stylize", "no", "relax", "sref"])
def test_a_name_is_refused_when_it_is_a_parameter(name: str) -> None:
    with pytest.raises(PreferError, match="is a parameter"):
        check_name(name)


def test_every_parameter_peel_reads_is_reserved() -> None:
    assert set(params_module._NAMES) <= RESERVED_NAMES


@pytest.mark.parametrize("name", ["", "a" * 33, "two words", "é", "a.b"])
def test_a_name_is_refused_when_not_1_to_32_of_the_allowed_characters(name: str) -> None:
    with pytest.raises(PreferError, match="1 to 32"):
        check_name(name)


def test_a_name_is_stored_lower_case_without_dashes() -> None:
    assert check_name(" --My_Set-2 ") == "my_set-2"


def test_an_option_set_is_refused_when_it_holds_words_or_bad_parameters() -> None:
    with pytest.raises(PreferError, match="parameters only"):
        check_options("watercolor --ar 2:1")
    with pytest.raises(PreferError, match="--ar"):
        check_options("--ar banana")
    with pytest.raises(PreferError, match=str(MAX_OPTION_CHARS)):
        check_options("--no " + "x" * MAX_OPTION_CHARS)
    assert check_options("  --ar 16:9   --model pro ") == "--ar 16:9 --model pro"


def test_a_suffix_is_refused_when_a_parameter_in_it_does_not_parse_or_it_is_too_long() -> None:
    with pytest.raises(PreferError, match="--seed"):
        check_suffix("in watercolor --seed minus")
    with pytest.raises(PreferError, match=str(MAX_SUFFIX_CHARS)):
        check_suffix("x" * (MAX_SUFFIX_CHARS + 1))
    assert check_suffix(" in  watercolor --ar 3:2 ") == "in watercolor --ar 3:2"


def test_the_suffix_words_go_before_the_prompts_parameters_when_applied() -> None:
    assert apply_suffix("a fox --seed 3", "in watercolor --ar 3:2") == "a fox in watercolor --seed 3 --ar 3:2"
    assert apply_suffix("a fox", "--ar 3:2") == "a fox --ar 3:2"
    assert apply_suffix("a fox", "") == "a fox"


def test_the_prompts_own_parameter_wins_over_the_suffixs_when_both_set_it() -> None:
    out = apply_suffix("a fox --aspect 1:1", "--ar 3:2 --model pro")
    assert out == "a fox --aspect 1:1 --model pro"
    parsed = parse_prompt(out)
    assert parsed.ok and parsed.params.aspect_ratio == "1:1"


def test_applying_a_suffix_twice_changes_nothing() -> None:
    once = apply_suffix("a fox --seed 3", "in watercolor --ar 3:2")
    assert apply_suffix(once, "in watercolor --ar 3:2") == once


def test_personalize_expands_sets_before_the_suffix_when_both_are_saved() -> None:
    prefs = PromptPrefs(suffix="at dusk --ar 1:1", option_sets=WIDE)
    assert personalize("a fox --wide", prefs) == "a fox at dusk --ar 16:9 --model pro"
    assert personalize("a fox", PromptPrefs()) == "a fox"


def test_a_set_or_suffix_is_refused_when_it_names_something_that_is_no_parameter() -> None:
    # A saved set named inside another would expand on a second pass (a Remix of the expanded prompt).
    with pytest.raises(PreferError, match="--wide"):
        check_options("--ar 1:1 --wide")
    with pytest.raises(PreferError, match="--wide"):
        check_suffix("at dusk --wide")
