"""The buttons and modals of grids and single images.

Every button is one persistent `DynamicItem`, `peel:<action>:<job>:<index>`: nothing lives in memory, a click
is resolved from the ledger, so buttons keep working after a restart and weeks later. Callbacks hand over to the
`ImagineCog`, which owns the flows.
"""

import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.core.models import JobId
from bot.core.regions import CELL_NAMES, cells_region, region_label
from bot.core.render import CustomId

if TYPE_CHECKING:
    from bot.exts.imagine import ImagineCog

GRID_ACTIONS = ("u", "v", "r")
# "vrt" is the region picker's "Type a box instead…" (`region_picker_view`), not a button of the image's message.
TOOL_ACTIONS = ("up2", "up4", "vs", "vx", "vr", "vrt", "ed", "z15", "z2", "zc", "sq", "pl", "pr", "pu", "pd", "fav")
ACTIONS = GRID_ACTIONS + TOOL_ACTIONS
TEMPLATE = rf"peel:(?P<action>{'|'.join(ACTIONS)}):(?P<job>[A-Za-z0-9_.-]+):(?P<index>[0-9]+)"

TOOL_ROWS: tuple[tuple[tuple[str, str | None, str | None], ...], ...] = (
    (("up2", "Upscale 2K", None), ("up4", "Upscale 4K", None)),
    (("vs", "Vary (Subtle)", None), ("vx", "Vary (Strong)", None), ("vr", "Vary (Region)", None), ("ed", "Edit", "✏️")),
    (
        ("z15", "Zoom Out 1.5×", None),
        ("z2", "Zoom Out 2×", None),
        ("zc", "Custom Zoom", "🔍"),
        ("sq", "Make Square", None),
    ),
    (("pl", None, "⬅️"), ("pr", None, "➡️"), ("pu", None, "⬆️"), ("pd", None, "⬇️")),
)


def _cog(interaction: discord.Interaction[Any]) -> "ImagineCog":
    cog = interaction.client.get_cog("ImagineCog")
    assert cog is not None
    return cog  # type: ignore[no-any-return]  # get_cog returns Cog; ImagineCog is the only one of that name


class PeelButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=TEMPLATE):
    """One persistent button of a Peel message; the action, job and image index live in its custom id."""

    def __init__(
        self,
        action: str,
        job_id: str,
        index: int,
        *,
        label: str | None = None,
        emoji: str | discord.PartialEmoji | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
        disabled: bool = False,
        row: int | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=style,
                disabled=disabled,
                row=row,
                custom_id=CustomId(action=action, job_id=job_id, index=index).encode(),
            )
        )
        self.action = action
        self.job_id = JobId(job_id)
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> "PeelButton":
        """Rebuild the button from a click on a message, whenever it was sent."""
        return cls(match["action"], match["job"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Hand the click to the cog."""
        await _cog(interaction).on_button(interaction, self.action, self.job_id, self.index)


def grid_view(job_id: str, present: Sequence[bool], *, separated: Collection[int] = ()) -> discord.ui.View:
    """Return the U1–U4 🔄 / V1–V4 buttons of a grid; a slot whose image failed gets disabled buttons.

    The U of an image already separated is blue, as in Midjourney, so the grid shows which ones were taken.
    """
    view = discord.ui.View(timeout=None)
    for i, ok in enumerate(present):
        style = discord.ButtonStyle.primary if i in separated else discord.ButtonStyle.secondary
        view.add_item(PeelButton("u", job_id, i, label=f"U{i + 1}", style=style, disabled=not ok, row=0))
    view.add_item(PeelButton("r", job_id, 0, emoji="🔄", row=0))
    for i, ok in enumerate(present):
        view.add_item(PeelButton("v", job_id, i, label=f"V{i + 1}", disabled=not ok, row=1))
    return view


def tools_view(
    job_id: str, index: int, *, link: str | None, favourite: bool = False, square: bool = True
) -> discord.ui.View:
    """Return a single image's tools: upscale, vary, edit, zoom, pan, favourite and the full-size link.

    Make Square is offered only on an image that is not square (`square` False), as in Midjourney.
    """
    view = discord.ui.View(timeout=None)
    for row, tools in enumerate(TOOL_ROWS):
        for action, label, emoji in tools:
            if action == "sq" and square:
                continue
            view.add_item(PeelButton(action, job_id, index, label=label, emoji=emoji, row=row))
    style = discord.ButtonStyle.success if favourite else discord.ButtonStyle.secondary
    view.add_item(PeelButton("fav", job_id, index, emoji="❤️", style=style, row=4))
    if link is not None:
        view.add_item(discord.ui.Button(style=discord.ButtonStyle.link, url=link, label="Full size", row=4))
    return view


# Buttons that keep a state of their own instead of turning blue once used: ❤️ is green while a favourite.
NOT_MARKED = frozenset({"fav"})


def used_view(message: discord.Message, used: Collection[str]) -> discord.ui.View | None:
    """Return the message's buttons with every Peel button in `used` (custom ids) blue, as Midjourney marks them.

    Generic over the actions: the message's own components are rebuilt as they are (labels, emoji, rows, link
    buttons, other marks), so any `PeelButton` a message carries gets it, the tools' new ones included. None when
    nothing changes (already blue, or not on this message): no edit is needed.
    """
    view = discord.ui.View.from_message(message, timeout=None)
    marked = discord.ui.View(timeout=None)
    changed = False
    for item in view.children:
        match = re.fullmatch(TEMPLATE, getattr(item, "custom_id", None) or "")
        if not isinstance(item, discord.ui.Button) or match is None:
            marked.add_item(item)
            continue
        style = item.style
        if item.custom_id in used and match["action"] not in NOT_MARKED and style is discord.ButtonStyle.secondary:
            style, changed = discord.ButtonStyle.primary, True
        button = PeelButton(match["action"], match["job"], int(match["index"]), label=item.label, emoji=item.emoji)
        button.item.style, button.item.disabled, button.item.row = style, item.disabled, item.row
        marked.add_item(button)
    return marked if changed else None


def clicked_button(interaction: discord.Interaction[Any]) -> str | None:
    """Return the custom id of the Peel button that led to this interaction: clicked, or that opened its modal."""
    data: Any = interaction.data or {}
    custom_id = str(data.get("custom_id", ""))
    if interaction.type is discord.InteractionType.component:
        return custom_id if re.fullmatch(TEMPLATE, custom_id) else None
    remix, edit = REMIX_MODAL.fullmatch(custom_id), EDIT_MODAL.fullmatch(custom_id)
    if remix is not None:
        return CustomId(action=remix["action"], job_id=remix["job"], index=int(remix["index"])).encode()
    if edit is not None:
        return CustomId(action="ed", job_id=edit["job"], index=int(edit["index"])).encode()
    return None


REMIX_MODAL = re.compile(r"peel-remix:(?P<action>[a-z0-9]+):(?P<job>[A-Za-z0-9_.-]+):(?P<index>[0-9]+)")
EDIT_MODAL = re.compile(r"peel-edit:(?P<job>[A-Za-z0-9_.-]+):(?P<index>[0-9]+)")
ZOOM_MODAL = re.compile(r"peel-zoom:(?P<job>[A-Za-z0-9_.-]+):(?P<index>[0-9]+)")
# A region picked on the picker's grid travels in the modal's id (`:<cells>`, e.g. `:12`), so no memory holds it.
REGION_MODAL = re.compile(r"peel-region:(?P<job>[A-Za-z0-9_.-]+):(?P<index>[0-9]+)(?::(?P<cells>[1-9]{1,9}))?")


class PromptModal(discord.ui.Modal):
    """Remix: a prompt box pre-filled with the prompt exactly as the user typed it, before V, Vary or 🔄 run.

    Its submission is handled by `ImagineCog.on_interaction` from the custom id and the submitted values, not
    here: a modal lives in discord.py's memory, and one opened before a restart would otherwise fail on submit.
    """

    def __init__(self, *, title: str, action: str, job_id: JobId, index: int, text: str) -> None:
        super().__init__(title=title, custom_id=f"peel-remix:{action}:{job_id}:{index}", timeout=15 * 60)
        self.prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label="Prompt",
            style=discord.TextStyle.paragraph,
            default=text,  # cut to 4,000 where it is sent (`fit_modal`), never inside a mention or an escape
            max_length=4000,
            custom_id="prompt",
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Leave the submission to the cog (see the class)."""


class EditModal(discord.ui.Modal):
    """Edit: an instruction for how to change the image. Submitted like `PromptModal`, through the cog."""

    def __init__(self, *, job_id: JobId, index: int) -> None:
        super().__init__(title="Edit image", custom_id=f"peel-edit:{job_id}:{index}", timeout=15 * 60)
        self.instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            label="What should change?",
            style=discord.TextStyle.paragraph,
            placeholder="make the sky stormy",
            max_length=1000,
            custom_id="instruction",
        )
        self.add_item(self.instruction)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Leave the submission to the cog (see the class)."""


class CustomZoomModal(discord.ui.Modal):
    """Custom Zoom: the prompt (pre-filled, editable) and a zoom factor from 1.0 to 2.0, like Midjourney's `--zoom`.

    Submitted like `PromptModal`, through the cog.
    """

    def __init__(self, *, job_id: JobId, index: int, text: str) -> None:
        super().__init__(title="Custom Zoom", custom_id=f"peel-zoom:{job_id}:{index}", timeout=15 * 60)
        self.prompt: discord.ui.TextInput[CustomZoomModal] = discord.ui.TextInput(
            label="Prompt", style=discord.TextStyle.paragraph, default=text, max_length=4000, custom_id="prompt"
        )
        self.zoom: discord.ui.TextInput[CustomZoomModal] = discord.ui.TextInput(
            label="Zoom (1.0 to 2.0)", default="2", placeholder="1.5", max_length=8, custom_id="zoom"
        )
        self.add_item(self.prompt)
        self.add_item(self.zoom)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Leave the submission to the cog (see `PromptModal`)."""


class RegionModal(discord.ui.Modal):
    """Vary (Region): which part of the image to change, typed, and what should be there.

    The region is typed: a named part of a 3×3 grid (`top-left` … `bottom-right`, `center`), a half (`left half`,
    `top half`, …), or a box in percent of the width and height, `x1 y1 x2 y2` (`bot.core.regions`). The picker
    (`region_picker_view`) opens it from "Type a box instead…". Submitted like `PromptModal`, through the cog.
    """

    def __init__(self, *, job_id: JobId, index: int) -> None:
        super().__init__(title="Vary (Region)", custom_id=f"peel-region:{job_id}:{index}", timeout=15 * 60)
        self.region: discord.ui.TextInput[RegionModal] = discord.ui.TextInput(
            label="Which region?",
            default="center",
            placeholder="top-left … bottom-right · center · left half · 10 20 60 80 (%)",
            max_length=40,
            custom_id="region",
        )
        self.prompt: discord.ui.TextInput[RegionModal] = discord.ui.TextInput(
            label="What should be there?",
            style=discord.TextStyle.paragraph,
            placeholder="a small red kite",
            max_length=1000,
            custom_id="prompt",
        )
        self.add_item(self.region)
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Leave the submission to the cog (see `PromptModal`)."""


class CellsPromptModal(discord.ui.Modal):
    """Vary (Region) for cells picked on the picker's grid: what should be there, pre-filled with the job's prompt.

    The cells are in the custom id (`peel-region:<job>:<index>:<cells>`), so a modal opened before a restart
    still knows its region. Submitted like `PromptModal`, through the cog.
    """

    def __init__(self, *, job_id: JobId, index: int, cells: str, text: str) -> None:
        title = f"Vary (Region): {region_label(cells_region(cells))}"
        super().__init__(title=title, custom_id=f"peel-region:{job_id}:{index}:{cells}", timeout=15 * 60)
        self.prompt: discord.ui.TextInput[CellsPromptModal] = discord.ui.TextInput(
            label="What should be there?",
            style=discord.TextStyle.paragraph,
            default=text,  # cut to 4,000 where it is sent (`fit_modal`)
            max_length=4000,
            custom_id="prompt",
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Leave the submission to the cog (see `PromptModal`)."""


CELLS_TEMPLATE = r"peel:cells:(?P<job>[A-Za-z0-9_.-]+):(?P<index>[0-9]+)"


class RegionCellsSelect(discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]], template=CELLS_TEMPLATE):
    """The picker's cells 1–9, several at once: the region is their bounding box. Persistent like `PeelButton`."""

    def __init__(self, job_id: str, index: int) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=CustomId(action="cells", job_id=job_id, index=index).encode(),
                placeholder="Pick cells: the region is the box around all of them",
                min_values=1,
                max_values=9,
                options=[
                    discord.SelectOption(label=f"{n + 1} · {name}", value=str(n + 1))
                    for n, name in enumerate(CELL_NAMES)
                ],
            )
        )
        self.job_id = JobId(job_id)
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> "RegionCellsSelect":
        """Rebuild the select from a pick, whenever the picker was sent."""
        return cls(match["job"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Hand the picked cells to the cog, in grid order ("21" and "12" are the same region)."""
        data: Any = interaction.data or {}
        cells = "".join(sorted({str(v) for v in data.get("values", [])}))
        await _cog(interaction).on_cells(interaction, self.job_id, self.index, cells)


def region_picker_view(job_id: str, index: int) -> discord.ui.View:
    """Return the picker's controls: the cells select and "Type a box instead…" (today's typed `RegionModal`)."""
    view = discord.ui.View(timeout=None)
    view.add_item(RegionCellsSelect(job_id, index))
    view.add_item(PeelButton("vrt", job_id, index, label="Type a box instead…", row=1))
    return view


def modal_values(data: Any) -> dict[str, str]:
    """Return a modal submission's text values by input custom id (a label-wrapped or an action-row input)."""
    values: dict[str, str] = {}
    for row in (data or {}).get("components", []):
        inner = row.get("components") or ([row["component"]] if "component" in row else [])
        for component in inner:
            if "custom_id" in component and isinstance(component.get("value"), str):
                values[str(component["custom_id"])] = component["value"]
    return values
