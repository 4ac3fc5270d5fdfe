"""Discord's side of the access policy: a Discord user becomes an `Actor`, a refusal becomes its message.

The rules themselves (guild allowed → role allowed → admin, and who may act on what) are `bot.core.access`.
"""

from collections.abc import Collection

import discord

from bot.core.access import REFUSAL_MESSAGES, AccessPolicy, Actor, Refusal
from bot.errors import UserFacingError


def actor_of(user: discord.abc.User, guild_id: int | None) -> Actor:
    """Return who `user` is in `guild_id`: their roles and Administrator permission count only as a member of it."""
    if isinstance(user, discord.Member) and guild_id is not None and user.guild.id == guild_id:
        return Actor(
            user_id=user.id,
            guild_id=guild_id,
            role_ids=frozenset(r.id for r in user.roles),
            is_guild_admin=user.guild_permissions.administrator,
        )
    return Actor(user_id=user.id, guild_id=guild_id)


def refusal_text(policy: AccessPolicy, user: discord.abc.User, guild_id: int | None) -> str | None:
    """Return the message telling `user` why Peel refuses them here, or None when it does not."""
    refusal = policy.refusal(actor_of(user, guild_id))
    return None if refusal is None else REFUSAL_MESSAGES[refusal]


class NotOwnerError(UserFacingError):
    """An action on someone else's job, batch or group by a user who is not a Peel admin."""

    def __init__(self, what: str) -> None:
        super().__init__(f"Only the {what}'s owner or a Peel admin can do that.", title=f"Not your {what}")


def check_owner(
    policy: AccessPolicy, user: discord.abc.User, guild_id: int | None, owner_id: int | None, what: str
) -> None:
    """Raise `NotOwnerError` unless `user` may act on something of `owner_id` here."""
    if not policy.may_manage(actor_of(user, guild_id), owner_id):
        raise NotOwnerError(what)


def policy_from_ids(
    *,
    allowed_guild_ids: Collection[int],
    allowed_role_ids: Collection[int],
    admin_role_ids: Collection[int],
    admin_user_ids: Collection[int],
    export_role_ids: Collection[int],
    guild_admins_are_peel_admins: bool = False,
) -> AccessPolicy:
    """Build the policy from the settings' id lists."""
    return AccessPolicy(
        allowed_guild_ids=frozenset(allowed_guild_ids),
        allowed_role_ids=frozenset(allowed_role_ids),
        admin_role_ids=frozenset(admin_role_ids),
        admin_user_ids=frozenset(admin_user_ids),
        export_role_ids=frozenset(export_role_ids),
        guild_admins_are_peel_admins=guild_admins_are_peel_admins,
    )


__all__ = [
    "AccessPolicy",
    "Actor",
    "NotOwnerError",
    "Refusal",
    "actor_of",
    "check_owner",
    "policy_from_ids",
    "refusal_text",
]
