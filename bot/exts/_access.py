"""Who may use Peel, and who is an admin: allowed guilds and roles and admin roles from settings."""

from collections.abc import Collection
from dataclasses import dataclass

import discord


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessPolicy:
    """Empty allow-lists allow everyone; admins are listed users, holders of an admin role, or guild administrators."""

    allowed_guild_ids: frozenset[int] = frozenset()
    allowed_role_ids: frozenset[int] = frozenset()
    admin_role_ids: frozenset[int] = frozenset()
    admin_user_ids: frozenset[int] = frozenset()
    export_role_ids: frozenset[int] = frozenset()

    @staticmethod
    def _role_ids(user: discord.abc.User) -> set[int]:
        return {r.id for r in user.roles} if isinstance(user, discord.Member) else set()

    def is_admin(self, user: discord.abc.User) -> bool:
        """Tell whether `user` may manage everyone's jobs."""
        if user.id in self.admin_user_ids or self._role_ids(user) & self.admin_role_ids:
            return True
        return isinstance(user, discord.Member) and user.guild_permissions.administrator

    def refusal(self, user: discord.abc.User, guild_id: int | None) -> str | None:
        """Return why `user` may not use Peel here, or None when they may."""
        if self.is_admin(user):
            return None
        if self.allowed_guild_ids and guild_id not in self.allowed_guild_ids:
            return "Peel isn't enabled in this server. Ask an admin to add it to the allowed servers."
        if self.allowed_role_ids and not self._role_ids(user) & self.allowed_role_ids:
            return "You need one of the roles allowed to use Peel here. Ask a server admin for access."
        return None

    def may_export(self, user: discord.abc.User) -> bool:
        """Tell whether `user` may export a group to a bucket (admins always; else the export roles)."""
        return self.is_admin(user) or bool(self._role_ids(user) & self.export_role_ids)


def policy_from_ids(
    *,
    allowed_guild_ids: Collection[int],
    allowed_role_ids: Collection[int],
    admin_role_ids: Collection[int],
    admin_user_ids: Collection[int],
    export_role_ids: Collection[int],
) -> AccessPolicy:
    """Build the policy from the settings' id lists."""
    return AccessPolicy(
        allowed_guild_ids=frozenset(allowed_guild_ids),
        allowed_role_ids=frozenset(allowed_role_ids),
        admin_role_ids=frozenset(admin_role_ids),
        admin_user_ids=frozenset(admin_user_ids),
        export_role_ids=frozenset(export_role_ids),
    )
