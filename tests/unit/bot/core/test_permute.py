"""Permutation prompts: `{a, b}` groups, nesting, escapes, placeholders left alone, caps."""

import pytest

from bot.core.permute import MAX_DEPTH, PermutationError, count, expand, has_permutations


def test_a_group_gives_one_prompt_per_option_in_order() -> None:
    assert expand("a {red, green, blue} bird", cap=40) == ("a red bird", "a green bird", "a blue bird")


def test_several_groups_multiply() -> None:
    assert expand("{a, b} and {c, d}", cap=40) == ("a and c", "a and d", "b and c", "b and d")
    assert count("{a, b} and {c, d} {e, f, g}") == 12


def test_groups_nest() -> None:
    assert expand("a {b, c {d, e}}", cap=40) == ("a b", "a c d", "a c e")
    assert expand("{a {b, c}}", cap=40) == ("a b", "a c")


def test_groups_expand_inside_parameters_too() -> None:
    assert expand("a fox --ar {1:1, 16:9}", cap=40) == ("a fox --ar 1:1", "a fox --ar 16:9")


def test_a_group_without_a_comma_is_text_so_template_placeholders_stay() -> None:
    assert expand("{prompt}, {name} in {folder}", cap=1) == ("{prompt}, {name} in {folder}",)
    assert expand("{prompt} as a {woodcut, watercolor}", cap=40) == (
        "{prompt} as a woodcut",
        "{prompt} as a watercolor",
    )
    assert not has_permutations("{prompt} of {name}")
    assert has_permutations("{prompt} of {a, b}")


def test_escaped_braces_and_commas_are_text() -> None:
    assert expand(r"a \{x, y\} b", cap=1) == ("a {x, y} b",)
    assert expand(r"{salt\, pepper, oil}", cap=40) == ("salt, pepper", "oil")
    assert not has_permutations(r"\{x, y\}")


def test_escapes_can_be_kept_for_a_second_expansion() -> None:
    once = expand(r"\{x, y\} {a, b}", cap=40, keep_escapes=True)
    assert once == (r"\{x, y\} a", r"\{x, y\} b")
    assert [expand(t, cap=1) for t in once] == [("{x, y} a",), ("{x, y} b",)]


def test_unmatched_braces_are_text() -> None:
    assert expand("a { b", cap=1) == ("a { b",)
    assert expand("a } b {c, d", cap=1) == ("a } b {c, d",)
    assert expand("{a, {b}", cap=1) == ("{a, {b}",)


def test_empty_options_and_spaces_fold() -> None:
    assert expand("a  {red, } cat", cap=40) == ("a red cat", "a cat")


def test_no_group_is_the_prompt_itself() -> None:
    assert expand("a plain prompt --ar 16:9", cap=1) == ("a plain prompt --ar 16:9",)
    assert count("a plain prompt") == 1


def test_past_the_cap_is_an_error_counted_before_expanding() -> None:
    assert len(expand("{a, b} {c, d} {e, f}", cap=8)) == 8
    with pytest.raises(PermutationError, match="make 9 prompts; at most 8"):
        expand("{a, b, c} {d, e, f}", cap=8)
    with pytest.raises(PermutationError, match="1,048,576 prompts"):
        expand("{a, b} " * 20, cap=40)  # never materialised


def test_nesting_is_capped() -> None:
    deep = "{a, " * MAX_DEPTH + "b" + "}" * MAX_DEPTH
    assert count(deep) == MAX_DEPTH + 1
    with pytest.raises(PermutationError, match="nest"):
        count("{a, " * (MAX_DEPTH + 1) + "b" + "}" * (MAX_DEPTH + 1))
