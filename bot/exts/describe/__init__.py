"""`/describe` (an image → four prompts, each a button that imagines it) and `/blend` (2–5 images → a grid).

Translation only: `DescribeService` (`bot.app.describe`) stores, submits and reads back; the grids a button or
`/blend` makes are followed by the `ImagineCog` like any `/imagine` (its message, progress and U/V/🔄 buttons).
The describe message's buttons are persistent `DynamicItem`s, `peel-d:<action>:<job>`: 1–4 imagine that prompt,
`r` describes the same image again, `all` imagines the four.
"""

import contextlib
import io
import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import SubmitStatus
from bot.app.describe import BLEND_SHAPES, Described
from bot.app.generation_types import GenerationError, ImaginePlan, Origin, Prepared, Submitted
from bot.core.admission import REFUSAL_TITLE
from bot.core.models import JobId
from bot.core.render import code
from bot.discord_bot import PeelBot
from bot.exts._access import refusal_text
from bot.exts._errors import error_embed, send_error
from bot.exts._send import fit_content, fit_embed, fit_view
from bot.exts.imagine._inputs import origin_of, read_attachments

if TYPE_CHECKING:
    from bot.exts.imagine import ImagineCog

log = logging.getLogger(__name__)

NUMBERS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣")
TEMPLATE = r"peel-d:(?P<action>[1-4]|r|all):(?P<job>[A-Za-z0-9_.-]+)"
# How long a /describe waits for its answer: well inside the 15 minutes an interaction token lives.
WAIT_S = 600.0
PREVIEW_NAME = "described.webp"
SHAPE_CHOICES = [app_commands.Choice(name=f"{shape} ({ratio})", value=shape) for shape, ratio in BLEND_SHAPES.items()]


def _cog(interaction: discord.Interaction[Any]) -> "DescribeCog":
    cog = interaction.client.get_cog("DescribeCog")
    assert cog is not None
    return cog  # type: ignore[no-any-return]  # get_cog returns Cog; DescribeCog is the only one of that name


class DescribeButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=TEMPLATE):
    """One persistent button of a describe message; the action and the describe job live in its custom id."""

    def __init__(self, action: str, job_id: str, *, label: str | None = None, emoji: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=discord.ButtonStyle.secondary,
                custom_id=f"peel-d:{action}:{job_id}",
                row=1 if action == "all" else 0,
            )
        )
        self.action = action
        self.job_id = JobId(job_id)

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> "DescribeButton":
        """Rebuild the button from a click, whenever its message was sent."""
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Hand the click to the cog."""
        await _cog(interaction).on_button(interaction, self.action, self.job_id)


def describe_view(job_id: str) -> discord.ui.View:
    """Return the buttons of a describe message: 1–4, 🔄 and "Imagine all"."""
    view = discord.ui.View(timeout=None)
    for n in range(1, 5):
        view.add_item(DescribeButton(str(n), job_id, label=str(n)))
    view.add_item(DescribeButton("r", job_id, emoji="🔄"))
    view.add_item(DescribeButton("all", job_id, label="Imagine all"))
    return view


def describe_embed(described: Described, name: str) -> discord.Embed:
    """Return the message's embed: the four prompts, numbered 1️⃣–4️⃣ as Midjourney shows them."""
    lines = [f"{NUMBERS[i]} {prompt}" for i, prompt in enumerate(described.prompts)]
    embed = discord.Embed(title="Describe", description="\n\n".join(lines))
    embed.set_footer(text=f"{name} · {described.width}×{described.height} · press a number to imagine it")
    return embed


class DescribeCog(commands.Cog):
    """`/describe` and `/blend`, Midjourney style."""

    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        self.service = bot.services.describe

    def _imagine(self) -> "ImagineCog":
        cog = self.bot.get_cog("ImagineCog")
        assert cog is not None, "bot.exts.imagine is loaded before bot.exts.describe"
        return cog  # type: ignore[return-value]  # the one cog of that name

    # ---- /describe ---------------------------------------------------------------------------------------------

    @app_commands.command(name="describe", description="Describe an image as four prompts you can imagine")
    @app_commands.describe(image="The image to describe", link="Or a link to it (http or https)")
    async def describe(
        self,
        interaction: discord.Interaction[Any],
        image: discord.Attachment | None = None,
        link: app_commands.Range[str, 1, 2000] | None = None,
    ) -> None:
        """Describe an attached or linked image."""
        if await self._refused(interaction):
            return
        await interaction.response.defer(thinking=True)
        try:
            origin = await self._origin(interaction)
            if (image is None) == (link is None):
                raise GenerationError("Attach an image or give a link to one (one of the two).")
            if image is not None:
                name = image.filename
                files = await read_attachments([image])
                submitted = await self.service.describe(name, files[0][1], origin)
            else:
                assert link is not None
                submitted = await self.service.describe_url(link, origin)
                name = submitted.prepared.display
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await self._fail(interaction, exc, where="/describe")
            return
        await self._follow(interaction, submitted, name)

    async def _follow(self, interaction: discord.Interaction[Any], submitted: Submitted, name: str) -> None:
        """Show "Describing…", wait for the answer, then show the prompts and their buttons."""
        result = submitted.result
        if result.status is SubmitStatus.REFUSED or result.job is None:
            await self._fail(interaction, GenerationError(result.message, title=REFUSAL_TITLE), where="/describe")
            return
        job_id = result.job.id
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content=fit_content(f"🔎 Describing {code(name)}…"))
        try:
            described = await self.service.wait(job_id, timeout_s=WAIT_S)
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await self._fail(interaction, exc, where="/describe")
            return
        embed = describe_embed(described, name)
        preview = await self.service.preview(job_id)
        files = []
        if preview is not None:  # the image beside its prompts, as Midjourney shows it
            files.append(discord.File(io.BytesIO(preview), filename=PREVIEW_NAME))
            embed.set_thumbnail(url=f"attachment://{PREVIEW_NAME}")
        try:
            await interaction.edit_original_response(
                content=None,
                embed=fit_embed(embed),
                attachments=files,
                view=fit_view(describe_view(job_id)),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException:
            log.warning("could not show description %s", job_id, exc_info=True)

    # ---- its buttons -------------------------------------------------------------------------------------------

    async def on_button(self, interaction: discord.Interaction[Any], action: str, job_id: JobId) -> None:
        """Run a describe message's button: imagine one prompt or all four, or describe again."""
        if await self._refused(interaction):
            return
        if action == "r":
            await interaction.response.defer(thinking=True)
            try:
                submitted = await self.service.again(job_id, await self._origin(interaction))
            except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
                await self._fail(interaction, exc, where="describe 🔄")
                return
            await self._follow(interaction, submitted, submitted.prepared.display)
            return
        if action == "all":
            await self._imagine_all(interaction, job_id)
            return
        number = int(action)

        async def make(origin: Origin) -> Prepared:
            return await self.service.imagine(job_id, number, origin)

        await interaction.response.defer(thinking=True)
        await self._imagine().launch(interaction, make, where=f"describe {number}")

    async def _imagine_all(self, interaction: discord.Interaction[Any], job_id: JobId) -> None:
        """Queue the four described prompts, each a grid in a message of its own."""
        await interaction.response.defer(thinking=True, ephemeral=True)
        try:
            origin = await self._origin(interaction)
            key = origin.idempotency_key
            jobs = []
            for n in range(1, 5):
                run = origin if n == 1 or key is None else replace(origin, idempotency_key=f"{key}#{n}")
                jobs.append(await self.service.imagine(job_id, n, run))
            queued = await self._imagine().post_all(interaction, ImaginePlan(jobs=tuple(jobs)), origin)
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await send_error(interaction, exc, where="describe all")
            return
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content=fit_content(f"Queued {queued} grids."))

    # ---- /blend ------------------------------------------------------------------------------------------------

    @app_commands.command(name="blend", description="Blend 2 to 5 images into a grid")
    @app_commands.describe(
        image1="The first image",
        image2="The second image",
        dimensions="The grid's shape: portrait 2:3, square 1:1, landscape 3:2",
        prompt="What else to say about the blend (inline --model etc. work)",
    )
    @app_commands.choices(dimensions=SHAPE_CHOICES)
    async def blend(
        self,
        interaction: discord.Interaction[Any],
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        dimensions: str = "square",
        prompt: app_commands.Range[str, 1, 1000] | None = None,
    ) -> None:
        """Blend the images: a normal grid with all its buttons, the images its references."""
        if await self._refused(interaction):
            return
        await interaction.response.defer(thinking=True)
        attachments = [a for a in (image1, image2, image3, image4, image5) if a is not None]
        try:
            files = await read_attachments(attachments)
        except Exception as exc:  # the Discord boundary: one mapper  # noqa: BLE001
            await self._fail(interaction, exc, where="/blend")
            return

        async def make(origin: Origin) -> Prepared:
            return await self.service.blend(files, origin, dimensions=dimensions, prompt=prompt or "")

        await self._imagine().launch(interaction, make, where="/blend")

    # ---- helpers -----------------------------------------------------------------------------------------------

    async def _origin(self, interaction: discord.Interaction[Any]) -> Origin:
        return await origin_of(
            self.bot, interaction.user, interaction.channel, interaction.guild_id, key=f"i:{interaction.id}"
        )

    async def _refused(self, interaction: discord.Interaction[Any]) -> bool:
        refusal = refusal_text(self.bot.access, interaction.user, interaction.guild_id)
        if refusal is None:
            return False
        await interaction.response.send_message(embed=fit_embed(error_embed("No access", refusal)), ephemeral=True)
        return True

    async def _fail(self, interaction: discord.Interaction[Any], exc: BaseException, *, where: str) -> None:
        """Replace the public loading message with an ephemeral error."""
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()
        await send_error(interaction, exc, where=where)


async def setup(bot: commands.Bot) -> None:
    """Load the extension."""
    assert isinstance(bot, PeelBot)
    bot.add_dynamic_items(DescribeButton)
    await bot.add_cog(DescribeCog(bot))


__all__ = ["DescribeButton", "DescribeCog", "describe_embed", "describe_view", "setup"]
