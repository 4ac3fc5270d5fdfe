"""Every message Peel sends fitted to Discord's limits first: Discord refuses a whole message over one limit.

The cogs pass their message's fields through `fit_message` (or `fit_content`, `fit_embed`, `fit_view` for one
field) where the message leaves, a modal through `fit_modal` and a thread's name through `fit_thread_name`;
`tests/unit/bot/exts/test_send_sites.py` fails on a send site that does not. The rules and the cutting are
`bot.core.discord_limits`; here the fitted data is written back into discord.py's objects.
"""

from typing import Any, TypeVar

import discord

from bot.core import discord_limits


def fit_content(content: str) -> str:
    """Return message content cut to Discord's 2,000 characters."""
    return discord_limits.fit_content(content)


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Return the embed cut to Discord's embed limits (the same embed when it already fits)."""
    data = embed.to_dict()
    fitted = discord_limits.fit_embed(data)
    return embed if fitted == data else discord.Embed.from_dict(fitted)


def fit_embeds(embeds: list[discord.Embed]) -> list[discord.Embed]:
    """Return at most 10 embeds, cut so that together they stay within Discord's 6,000 characters."""
    data = [embed.to_dict() for embed in embeds]
    fitted = discord_limits.fit_embeds(data)
    if fitted == data:
        return embeds
    return [discord.Embed.from_dict(one) for one in fitted]


V = TypeVar("V", bound=discord.ui.View)
M = TypeVar("M", bound=discord.ui.Modal)


def fit_thread_name(name: str) -> str:
    """Return a thread name cut to Discord's 100 characters."""
    return discord_limits.fit_thread_name(name)


def _fit_select(select: discord.ui.Select[Any]) -> None:
    data = dict(select.to_component_dict())
    fitted = discord_limits.fit_select(data)
    if fitted == data:
        return
    select.placeholder = fitted.get("placeholder")
    if "options" in fitted:
        select.options = [discord.SelectOption.from_dict(option) for option in fitted["options"]]
    select.min_values, select.max_values = fitted.get("min_values", 1), fitted.get("max_values", 1)


def _fit_text_input(text_input: discord.ui.TextInput[Any]) -> None:
    data = dict(text_input.to_component_dict())
    fitted = discord_limits.fit_text_input(data)
    if fitted == data:
        return
    if fitted.get("label") != data.get("label"):  # set only when cut: discord.py deprecates a text input's label
        text_input.label = fitted["label"]
    text_input.placeholder = fitted.get("placeholder")
    text_input.default = fitted.get("value")
    text_input.min_length, text_input.max_length = fitted.get("min_length"), fitted.get("max_length")


def _fit_item(parent: discord.ui.View | discord.ui.Modal, item: discord.ui.Item[Any]) -> None:
    """Fit one item's texts in place; a link button Discord would refuse leaves its view."""
    inner = item.item if isinstance(item, discord.ui.DynamicItem) else item
    if isinstance(inner, discord.ui.Button):
        fitted = discord_limits.fit_button(dict(inner.to_component_dict()))
        if fitted is None:
            parent.remove_item(item)
        elif fitted.get("label") != inner.label:
            inner.label = fitted["label"]
    elif isinstance(inner, discord.ui.Select):
        _fit_select(inner)
    elif isinstance(inner, discord.ui.TextInput):
        _fit_text_input(inner)
    elif isinstance(inner, discord.ui.Label):
        inner.text = discord_limits.fit_text(inner.text, discord_limits.TEXT_INPUT_LABEL)
        if inner.description:
            inner.description = discord_limits.fit_text(inner.description, discord_limits.LABEL_DESCRIPTION)


def fit_view(view: V) -> V:
    """Return the view with its labels, placeholders and options fitted in place (links too long left out).

    Raises:
        ValueError: a layout or custom id Peel must never build (see `discord_limits.fit_components`).
    """
    for item in list(view.walk_children()):
        _fit_item(view, item)
    discord_limits.fit_components(view.to_components())  # what is left is Peel's own: refuse it loudly
    return view


def fit_modal(modal: M) -> M:
    """Return the modal with its title and inputs fitted in place.

    Raises:
        ValueError: a layout or custom id Peel must never build (see `discord_limits.fit_modal`).
    """
    modal.title = discord_limits.fit_text(modal.title, discord_limits.MODAL_TITLE)
    for item in list(modal.walk_children()):
        _fit_item(modal, item)
    discord_limits.fit_modal(modal.to_dict())
    return modal


def fit_message(fields: dict[str, Any]) -> dict[str, Any]:
    """Return a send or edit call's keyword fields with `content`, `embed`, `embeds` and `view` fitted."""
    fitted = dict(fields)
    if isinstance(fitted.get("content"), str):
        fitted["content"] = discord_limits.fit_content(fitted["content"])
    if isinstance(fitted.get("embed"), discord.Embed):
        fitted["embed"] = fit_embed(fitted["embed"])
    if isinstance(fitted.get("embeds"), list):
        fitted["embeds"] = fit_embeds(fitted["embeds"])
    if isinstance(fitted.get("view"), discord.ui.View):
        fitted["view"] = fit_view(fitted["view"])
    return fitted
