"""`/help`'s layout: every command in its section, typed as users type it."""

from bot.core.helptext import OTHER_SECTION, CommandDoc, help_sections, usage


def test_usage_shows_required_options_bare_and_optional_ones_in_brackets() -> None:
    doc = CommandDoc(name="prefer option set", description="d", options=(("name", True), ("value", False)))
    assert usage(doc) == "/prefer option set name [value]"


def test_usage_folds_numbered_siblings_when_a_command_has_many() -> None:
    options = (("prompt", True), ("image", False), *((f"image{n}", False) for n in range(2, 11)), ("size", False))
    doc = CommandDoc(name="imagine", description="d", options=options)
    assert usage(doc) == "/imagine prompt [image…image10] [size]"


def test_sections_keep_their_order_and_a_new_command_lands_under_more() -> None:
    docs = [
        CommandDoc(name="budget show", description="caps"),
        CommandDoc(name="zebra", description="new"),
        CommandDoc(name="imagine", description="make"),
        CommandDoc(name="show", description="bring back"),
    ]
    sections = help_sections(docs)
    assert [title for title, _ in sections] == ["Make images", "Your jobs and settings", "Admins", OTHER_SECTION]
    assert sections[0][1] == "`/imagine` — make"
    assert "`/zebra` — new" in sections[-1][1]
