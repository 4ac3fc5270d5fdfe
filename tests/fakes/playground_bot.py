"""A small real discord.py bot for playground tests: a slash command with an attachment, a DynamicItem button,
a modal, a select, reactions and thread replies, the way Peel uses them."""

from __future__ import annotations

import asyncio
import io
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

if TYPE_CHECKING:
    import re
    from collections.abc import AsyncIterator

    from local.discord import Playground


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand (``clock.now += 3.5``)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def make_png(size: int = 8, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """Return a square PNG shaded from ``color`` to dark (pure CPU work, no file I/O)."""
    image = Image.linear_gradient("L").resize((size, size))
    out = io.BytesIO()
    Image.merge("RGB", [image.point(lambda v, c=c: v * c // 255) for c in color]).save(out, format="PNG")
    return out.getvalue()


class VariantButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"peel:v:(?P<job>[0-9]+):(?P<index>[1-4])"
):
    """A persistent button whose state lives in its custom id, like Peel's."""

    def __init__(self, job: int, index: int) -> None:
        super().__init__(
            discord.ui.Button(label=f"V{index}", style=discord.ButtonStyle.secondary, custom_id=f"peel:v:{job}:{index}")
        )
        self.job = job
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> VariantButton:
        return cls(int(match["job"]), int(match["index"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()  # a component with thinking=False: DEFERRED_UPDATE_MESSAGE
        message = interaction.message
        assert message is not None
        thread = message.thread or await message.create_thread(name=f"job {self.job}")
        await thread.send(
            f"Variation {self.index} of job {self.job}",
            file=discord.File(io.BytesIO(make_png(128, (90, 120, 250))), "variation.png"),
        )
        await interaction.followup.send(f"Variation {self.index} posted in {thread.mention}", ephemeral=True)


class RemixModal(discord.ui.Modal, title="Remix"):
    prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(label="New prompt", custom_id="remix_prompt")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"Remixing with: {self.prompt.value}")


class ToolsView(discord.ui.View):
    """A persistent view with a modal button and a select menu."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Remix", custom_id="tools:remix", style=discord.ButtonStyle.primary)
    async def remix(self, interaction: discord.Interaction, button: discord.ui.Button[ToolsView]) -> None:
        await interaction.response.send_modal(RemixModal())

    @discord.ui.select(
        custom_id="tools:ratio",
        options=[discord.SelectOption(label=r, value=r) for r in ("1:1", "16:9", "9:16")],
    )
    async def ratio(self, interaction: discord.Interaction, select: discord.ui.Select[ToolsView]) -> None:
        await interaction.response.edit_message(content=f"Aspect ratio set to {select.values[0]}")


class PlaygroundTestBot(commands.Bot):
    """The bot under test; records what it saw so tests can assert on it."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
        self.jobs = 0
        self.received_bytes: list[bytes] = []
        self.reactions: list[tuple[str, int]] = []
        self.thread_replies: list[str] = []
        self.errors: list[BaseException] = []
        self.add_dynamic_items(VariantButton)
        self.tree.add_command(self._imagine())
        self.tree.add_command(self._tools())
        self.tree.add_command(self._style())
        self.tree.add_command(app_commands.ContextMenu(name="Describe", callback=self._describe))

    async def setup_hook(self) -> None:
        self.add_view(ToolsView())
        await self.tree.sync()

    def _imagine(self) -> app_commands.Command[Any, ..., None]:
        @app_commands.command(name="imagine", description="Generate an image")
        @app_commands.describe(prompt="what to draw", image="a reference image")
        async def imagine(
            interaction: discord.Interaction, prompt: str, image: discord.Attachment | None = None
        ) -> None:
            await interaction.response.defer(thinking=True)
            self.jobs += 1
            job = self.jobs
            if image is not None:
                self.received_bytes.append(await image.read())
            view = discord.ui.View(timeout=None)
            for index in (1, 2):
                view.add_item(VariantButton(job, index))
            await interaction.followup.send(
                f"**{prompt}** (job {job})",
                file=discord.File(io.BytesIO(make_png(256, (250, 200, 40))), "grid.png"),
                embed=discord.Embed(title=prompt, description=f"job {job}").set_image(url="attachment://grid.png"),
                view=view,
            )

        return imagine

    def _tools(self) -> app_commands.Command[Any, ..., None]:
        @app_commands.command(name="tools", description="Show the tools")
        async def tools(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("Tools", view=ToolsView())

        return tools

    def _style(self) -> app_commands.Command[Any, ..., None]:
        async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            styles = ["watercolor", "woodcut", "wireframe", "pixel art"]
            return [app_commands.Choice(name=s, value=s) for s in styles if s.startswith(current.lower())]

        @app_commands.command(name="style", description="Pick a style")
        @app_commands.autocomplete(name=complete)
        async def style(interaction: discord.Interaction, name: str) -> None:
            await interaction.response.send_message(f"Style: {name}", ephemeral=True)

        return style

    async def _describe(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(f"That message says {message.content!r}", ephemeral=True)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.reactions.append((str(payload.emoji), payload.user_id))

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not isinstance(message.channel, discord.Thread):
            return
        self.thread_replies.append(message.content)
        await message.channel.send(f"edit: {message.content}")


@asynccontextmanager
async def running_bot(pg: Playground, bot: commands.Bot | None = None) -> AsyncIterator[PlaygroundTestBot]:
    """Start a test bot connected to the playground; close it afterwards."""
    with pg.discord_py():
        client = bot or PlaygroundTestBot()
        assert isinstance(client, PlaygroundTestBot)
        await client.login(pg.token)
        task = asyncio.create_task(client.connect(reconnect=False))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 10)
            yield client
        finally:
            await client.close()
            await asyncio.wait_for(task, 5)
