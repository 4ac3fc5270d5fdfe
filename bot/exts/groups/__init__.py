"""`/group`: threads are groups. New, list, gallery, download (a ZIP with manifests), export to a bucket, rename.

The group of a thread is the thread's; in a channel it is the channel's default group. Download, export, rename
and revoking a gallery link act on a group: only its owner (who opened the thread) and Peel admins may use them; a
channel's default group has no owner. `gallery` answers with the link of the group's gallery page, a capability
URL: whoever has it sees the group; `revoke:True` replaces it.
"""

import asyncio
import contextlib
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.gallery import GalleryService
from bot.app.groups import GroupError, GroupService
from bot.app.runtime import Runtime
from bot.core.models import Group
from bot.core.renames import RenameWindow
from bot.core.render import download_line, echo, one_line, truncate
from bot.errors import UserFacingError
from bot.exts._access import AccessPolicy, actor_of, check_owner
from bot.exts._send import fit_content, fit_thread_name, fit_view

log = logging.getLogger(__name__)

EXPORT_PROGRESS_EVERY_S = 2.0  # the ephemeral export message is edited at most this often


class GroupCog(commands.GroupCog, group_name="group", group_description="Threads are groups of images"):
    """The `/group` commands."""

    def __init__(
        self, bot: commands.Bot, runtime: Runtime, service: GroupService, gallery: GalleryService | None = None
    ) -> None:
        super().__init__()
        self.bot = bot
        self._rt = runtime
        self.service = service
        self.gallery = gallery
        self._renames: dict[int, RenameWindow] = {}  # thread id → its renames in Discord's window

    async def _group_here(self, interaction: discord.Interaction[Any]) -> Group:
        channel = interaction.channel
        if isinstance(channel, discord.Thread):
            return await self.service.group_of(
                name=channel.name,
                guild_id=interaction.guild_id,
                channel_id=channel.parent_id,
                thread_id=channel.id,
                owner_id=channel.owner_id,
            )
        if interaction.channel_id is None:
            raise UserFacingError("Use this in a channel or a thread.")
        name = f"#{getattr(channel, 'name', interaction.channel_id)}"
        return await self.service.group_of(name=name, guild_id=interaction.guild_id, channel_id=interaction.channel_id)

    @property
    def _access(self) -> AccessPolicy:
        access = getattr(self.bot, "access")  # noqa: B009 - PeelBot's policy, without importing PeelBot (a cycle)
        assert isinstance(access, AccessPolicy)
        return access

    async def _owned_group_here(self, interaction: discord.Interaction[Any]) -> Group:
        """Return the group here, refusing a user who neither owns it nor is a Peel admin."""
        group = await self._group_here(interaction)
        owner = group.owner_id
        if owner is None and isinstance(interaction.channel, discord.Thread):
            owner = interaction.channel.owner_id  # a group recorded before groups had owners
        check_owner(self._access, interaction.user, interaction.guild_id, owner, "group")
        return group

    @app_commands.command(name="new", description="Open a thread as a new group")
    @app_commands.describe(name="The group's (and thread's) name")
    async def new(self, interaction: discord.Interaction[Any], name: app_commands.Range[str, 1, 100]) -> None:
        """Open a thread in this channel; everything made in it belongs to the new group."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        name = one_line(name)
        if not name:
            raise UserFacingError("Give the group a name with something visible in it.")
        channel = interaction.channel
        if isinstance(channel, discord.Thread):
            channel = channel.parent
        if not isinstance(channel, discord.TextChannel):
            raise UserFacingError("Groups are threads: use this in a text channel.")
        thread = await channel.create_thread(name=fit_thread_name(name), type=discord.ChannelType.public_thread)
        group = await self.service.group_of(
            name=name,
            guild_id=interaction.guild_id,
            channel_id=channel.id,
            thread_id=thread.id,
            owner_id=interaction.user.id,  # the bot opened the thread, for this user
        )
        view = await self._gallery_view(group, interaction.user, interaction.guild_id)
        await thread.send(
            fit_content(
                f"🗂️ New group **{echo(name, mid_line=True)}** by {interaction.user.mention}. "
                "Everything made in this thread belongs to it."
                + ("" if view is None else " Browse, select and download it on its gallery page.")
            ),
            view=fit_view(view) if view is not None else discord.utils.MISSING,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        await interaction.followup.send(fit_content(f"Opened {thread.mention}."), ephemeral=True)

    async def _gallery_view(self, group: Group, user: discord.abc.User, guild_id: int | None) -> discord.ui.View | None:
        """Return a view with the group's "Gallery" link button, or None where galleries are not offered."""
        if self.gallery is None or not self.gallery.available():
            return None
        link = await self.gallery.link(
            group, issued_by=user.id, can_export=self._access.may_export(actor_of(user, guild_id))
        )
        return gallery_view(link.url)

    @app_commands.command(name="gallery", description="This thread's gallery page: browse, select, download")
    @app_commands.describe(revoke="Stop the current link working and make a new one (the group's owner or an admin)")
    async def gallery_link(self, interaction: discord.Interaction[Any], revoke: bool = False) -> None:
        """Answer (only to the asker) with the link of this thread's gallery page; `revoke` replaces the link."""
        if self.gallery is None or not self.gallery.available():
            raise UserFacingError(
                "Gallery pages need Peel's web server to be reachable: an admin sets PUBLIC_BASE_URL.",
                title="No gallery here",
            )
        await interaction.response.defer(ephemeral=True, thinking=True)
        actor = actor_of(interaction.user, interaction.guild_id)
        can_export = self._access.may_export(actor)
        if revoke:
            group = await self._owned_group_here(interaction)
            link = await self.gallery.revoke(
                group, by=interaction.user.id, is_admin=self._access.is_admin(actor), can_export=can_export
            )
            said = "🔒 The old gallery link no longer works. The new one, for whoever should have it:"
        else:
            group = await self._group_here(interaction)
            link = await self.gallery.link(group, issued_by=interaction.user.id, can_export=can_export)
            said = (
                f"🖼️ The gallery of **{echo(group.name, mid_line=True)}**. Anyone with this link can see the group's"
                " images; "
                "its owner or an admin can replace it with `/group gallery revoke:True`."
            )
        await interaction.followup.send(
            fit_content(f"{said}\n<{link.url}>"),
            view=fit_view(gallery_view(link.url)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="list", description="List this server's groups with their image counts")
    async def list_groups(self, interaction: discord.Interaction[Any]) -> None:
        """Show the newest groups of the server and how many images each holds."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        groups = await self.service.groups_with_counts(guild_id=interaction.guild_id)
        if not groups:
            await interaction.followup.send("No groups yet: `/group new` opens one.", ephemeral=True)
            return
        lines = []
        for group, count in groups:
            where = f"<#{group.thread_id}>" if group.thread_id else f"<#{group.channel_id}> (channel)"
            name = truncate(echo(group.name, mid_line=True), 80)
            lines.append(f"• **{name}** {where}: {count:,} image{'s' if count != 1 else ''}")
        await interaction.followup.send(
            fit_content("\n".join(lines)), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @app_commands.command(name="download", description="A ZIP link of this thread's group (manifest included)")
    async def download(self, interaction: discord.Interaction[Any]) -> None:
        """Write a ZIP of every image of this thread's group and answer with its link."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        group = await self._owned_group_here(interaction)
        zipped = await self.service.download(group)
        name = echo(group.name, mid_line=True)
        what = f"**{name}**: {zipped.images:,} images with manifest.csv and manifest.json"
        await interaction.followup.send(
            fit_content(download_line(zipped.url, what=what, expires_s=self._rt.link_lifetime_s)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="export", description="Copy this thread's group to a configured bucket")
    @app_commands.describe(bucket="A destination configured by the admins", prefix="A folder inside the bucket")
    async def export(self, interaction: discord.Interaction[Any], bucket: str, prefix: str | None = None) -> None:
        """Copy every image of this thread's group, and its manifests, to an export destination."""
        if not self._access.may_export(actor_of(interaction.user, interaction.guild_id)):
            raise UserFacingError("Exporting needs one of the export roles. Ask an admin.", title="Not allowed")
        await interaction.response.defer(ephemeral=True, thinking=True)
        group = await self._owned_group_here(interaction)
        self.service.destination_url(bucket)
        counts = [0, 0]
        changed = asyncio.Event()

        def on_progress(done: int, total: int) -> None:
            counts[:] = [done, total]
            changed.set()

        task = asyncio.create_task(
            self.service.export(group, destination=bucket, prefix=prefix or "", progress=on_progress)
        )
        status = await interaction.followup.send(fit_content(f"Exporting to `{bucket}`…"), ephemeral=True, wait=True)
        shown = (0, 0)
        while not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), EXPORT_PROGRESS_EVERY_S)
            if not task.done() and (counts[0], counts[1]) != shown:
                shown = (counts[0], counts[1])
                await status.edit(content=fit_content(f"Exporting to `{bucket}`… {shown[0]:,}/{shown[1]:,} images"))
        try:
            result = task.result()
        except GroupError as exc:
            await status.edit(content=fit_content(f"Export failed: {exc.user_message}"))
            return
        size_mb = result.bytes / 1e6
        await status.edit(
            content=fit_content(
                f"✅ Exported {result.images:,} images ({size_mb:.1f} MB) and manifest.csv/manifest.json to "
                f"`{bucket}` under `{result.prefix}`."
            )
        )

    @app_commands.command(name="rename", description="Rename this thread's group (and the thread)")
    @app_commands.describe(name="The new name")
    async def rename(self, interaction: discord.Interaction[Any], name: app_commands.Range[str, 1, 100]) -> None:
        """Rename the group of this thread or channel; a thread is renamed too."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        name = one_line(name)
        if not name:
            raise UserFacingError("Give the group a name with something visible in it.")
        group = await self._owned_group_here(interaction)
        await self.service.rename(group, name)
        said = f"Renamed to **{echo(name, mid_line=True)}**."
        thread = interaction.channel
        if isinstance(thread, discord.Thread):
            window = self._renames.setdefault(thread.id, RenameWindow())
            now = asyncio.get_running_loop().time()
            if window.try_rename(now):
                await thread.edit(name=fit_thread_name(name))
            else:
                minutes = max(1, round(window.next_allowed_in(now) / 60))
                said += (
                    " Discord lets a thread change its name twice in 10 minutes, so the thread keeps its name for"
                    f" now: rename it again in about {minutes} min to change the thread too."
                )
        await interaction.followup.send(
            fit_content(said), ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )


def gallery_view(url: str) -> discord.ui.View:
    """Return a view holding one "Gallery" link button to `url`."""
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label="Gallery", emoji="🖼️", style=discord.ButtonStyle.link, url=url))
    return view


async def setup(bot: commands.Bot) -> None:
    """Load the cog (the extension entry point); the bot must carry a `runtime`."""
    runtime = getattr(bot, "runtime")  # noqa: B009 - PeelBot's attribute, without importing PeelBot (a cycle)
    services = getattr(bot, "services")  # noqa: B009 - as above
    await bot.add_cog(GroupCog(bot, runtime, services.groups, services.gallery))
