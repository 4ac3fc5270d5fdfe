"""Archive member names: sanitized so they extract safely, and unique ignoring case, deterministically."""

from pathlib import PurePosixPath

import pytest

from usertext.names import ArchiveNames, numbered, sanitize_name, suffix


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("cat.png", "cat.png"),
        ("../../etc/passwd", "etc/passwd"),
        ("/abs/path.png", "abs/path.png"),
        ("C:\\Users\\me\\cat.png", "C_/Users/me/cat.png"),
        ("a/./b//c.png", "a/b/c.png"),
        ("..", "file"),
        ("", "file"),
        ("tab\there.png", "tab_here.png"),
        ('what?*<>|".png', "what______.png"),
        ("dots.../x. ", "dots/x"),
        ("  lead.png", "lead.png"),
        ("caf\u0065\u0301.png", "caf\u00e9.png"),  # NFC
        ("invoice\u202egnp.exe", "invoicegnp.exe"),  # RIGHT-TO-LEFT OVERRIDE would show it as `invoiceexe.png`
        ("a\u2066b\u2067c\u2068d\u2069e\u202af\u202bg\u202ch\u202di\u200ej\u200fk\u061cl.png", "abcdefghijkl.png"),
        ("c1\u0085\u009b.png", "c1__.png"),  # C1 controls, like C0 ones
        ("CON", "_CON"),  # Windows device names, with an extension too, as a folder too
        ("set/nul.tar.gz", "set/_nul.tar.gz"),
        ("Com1 .png", "_Com1 .png"),
        ("lpt\u00b9/aux.png", "_lpt\u00b9/_aux.png"),
        ("console.png", "console.png"),
        ("com10.png", "com10.png"),
    ],
)
def test_sanitize_name_gives_a_safe_relative_path_when_name_is_hostile(raw: str, clean: str) -> None:
    assert sanitize_name(raw) == clean


def test_archive_names_drop_bidi_controls_when_a_result_name_holds_them() -> None:
    names = ArchiveNames()
    assert names.add("photo\u202egnp.exe") == "photognp.exe"
    assert names.add("photo\u2067gnp.exe") == "photognp (2).exe"


def test_sanitize_name_shortens_a_segment_keeping_its_extension_when_too_long() -> None:
    clean = sanitize_name("x" * 500 + ".png")
    assert len(clean) == 200
    assert clean.endswith("x.png")


@pytest.mark.parametrize(
    ("name", "number", "expected"),
    [
        ("a.png", 2, "a (2).png"),
        ("d/a.tar.gz", 3, "d/a.tar (3).gz"),
        (".env", 2, ".env (2)"),
        ("noext", 2, "noext (2)"),
    ],
)
def test_numbered_puts_the_number_before_the_extension_when_called(name: str, number: int, expected: str) -> None:
    assert numbered(name, number) == expected


def test_archive_names_number_duplicates_in_order_when_names_repeat() -> None:
    names = ArchiveNames()
    assert [names.add(n) for n in ["a.png", "a.png", "A.PNG", "b.png", "a (2).png"]] == [
        "a.png",
        "a (2).png",
        "A (3).PNG",
        "b.png",
        "a (2) (2).png",
    ]


def test_archive_names_keep_files_and_directories_apart_when_paths_collide() -> None:
    names = ArchiveNames()
    assert names.add("x/y.png") == "x/y.png"
    assert names.add("x") == "x (2)"  # a file cannot be called like the directory x/
    assert names.add("f") == "f"
    assert names.add("f/g.png") == "f (2)/g.png"  # the directory f/ cannot be called like the file f
    assert names.add("F/h.png") == "f (2)/h.png"  # and keeps its new name for the members after


def test_archive_names_avoid_reserved_names_when_given() -> None:
    names = ArchiveNames(["manifest.csv"])
    assert names.add("manifest.csv") == "manifest (2).csv"
    assert names.add("../manifest.csv") == "manifest (3).csv"


def test_archive_names_keep_the_callers_string_when_a_name_is_already_safe_and_folded() -> None:
    # 10,000 members: the name sets then share each member's own name instead of holding a copy of it.
    name = "".join(["00042", ".png"])  # built at run time, so not a shared constant
    names = ArchiveNames()
    assert sanitize_name(name) is name
    assert names.add(name) is name
    assert sanitize_name("Cat.png") == "Cat.png"
    assert names.add("Cat.png") == "Cat.png"  # a name that casefolds differently is still matched
    assert names.add("cat.png") == "cat (2).png"


@pytest.mark.parametrize(
    "name",
    ["a.png", "a/b.tar.gz", ".env", "a.", "a..zip", "..zip", "zip", "", ".", "..", "a/./b.PNG", "a//b.jpg", "d.x/f"],
)
def test_suffix_matches_pure_posix_path_when_names_vary(name: str) -> None:
    assert suffix(name) == PurePosixPath(name).suffix
