"""Every message, modal and thread name Peel sends goes through a fitter of `bot.exts._send` first.

Discord refuses a whole message over one limit (400, code 50035), so a send site that skips the fitter is a bug
waiting for a long prompt or name. This reads the source of the Discord layer and fails on such a site.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
SOURCES = [*sorted((ROOT / "bot" / "exts").rglob("*.py")), ROOT / "bot" / "discord_bot.py"]

SENDS = {"send", "edit", "send_message", "edit_message", "edit_original_response", "create_thread", "send_modal"}
CONTENT_FIRST = {"send", "send_message"}  # the methods whose first positional argument is the content
FITTED_FIELDS = {
    "content": "fit_content",
    "embed": "fit_embed",
    "embeds": "fit_embeds",
    "view": "fit_view",
    "name": "fit_thread_name",
}
# Peel's own wrappers, which fit what they send themselves (`MessageTracker.edit` through `fit_message`).
OWN_WRAPPERS = {"self.edit", "self.tracker.edit", "self.service.edit"}


def _called(node: ast.expr, name: str) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == name) or (isinstance(func, ast.Attribute) and func.attr == name)


def _fitted(node: ast.expr, fitter: str) -> bool:
    """A literal (a fixed short text, None or discord.py's `MISSING`: no such part) or the field's fitter's result,
    or a choice of them."""
    if isinstance(node, ast.IfExp):
        return _fitted(node.body, fitter) and _fitted(node.orelse, fitter)
    if isinstance(node, ast.Attribute) and node.attr == "MISSING":
        return True
    return (isinstance(node, ast.Constant) and isinstance(node.value, str | None)) or _called(node, fitter)


def unfitted(source: str, filename: str) -> Iterator[str]:
    """Yield `file:line call` for each send site passing a message field that no fitter went through."""
    for node in ast.walk(ast.parse(source, filename)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SENDS):
            continue
        if ast.unparse(node.func) in OWN_WRAPPERS:
            continue
        method = node.func.attr
        where = f"{filename}:{node.lineno} {ast.unparse(node.func)}"
        if node.args and method in CONTENT_FIRST and not _fitted(node.args[0], "fit_content"):
            yield f"{where}: content"
        if method == "send_modal" and not (node.args and _called(node.args[0], "fit_modal")):
            yield f"{where}: the modal"
        for keyword in node.keywords:
            if keyword.arg is None:
                if not _called(keyword.value, "fit_message"):
                    yield f"{where}: **{ast.unparse(keyword.value)}"
            elif keyword.arg in FITTED_FIELDS and not _fitted(keyword.value, FITTED_FIELDS[keyword.arg]):
                yield f"{where}: {keyword.arg}"


def test_every_send_site_fits_its_message_to_discords_limits() -> None:
    found = [line for path in SOURCES for line in unfitted(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


def test_an_unfitted_send_site_is_found() -> None:
    source = (
        "async def f(channel, interaction, text, view, modal, fields):\n"
        "    await channel.send(text)\n"
        "    await channel.send(content=f'{text}', view=view)\n"
        "    await interaction.response.send_modal(modal)\n"
        "    await interaction.edit_original_response(**fields)\n"
        "    await channel.create_thread(name=text)\n"
        "    await message.edit(view=view if view else None)\n"
    )
    assert [line.split(" ", 1)[1] for line in unfitted(source, "f.py")] == [
        "channel.send: content",
        "channel.send: content",
        "channel.send: view",
        "interaction.response.send_modal: the modal",
        "interaction.edit_original_response: **fields",
        "channel.create_thread: name",
        "message.edit: view",
    ]


def test_fitted_send_sites_pass() -> None:
    source = (
        "async def f(channel, interaction, text, view, modal, fields):\n"
        "    await channel.send(fit_content(text), view=fit_view(view), allowed_mentions=None)\n"
        "    await channel.send('Done.', view=None)\n"
        "    await interaction.response.send_modal(fit_modal(modal))\n"
        "    await interaction.edit_original_response(**fit_message(fields))\n"
        "    await channel.create_thread(name=fit_thread_name(text))\n"
        "    await message.edit(view=None if view is None else fit_view(view))\n"
    )
    assert list(unfitted(source, "f.py")) == []
