"""Who may use Peel, who is a Peel admin, and who may act on a job, a batch or a group (pure).

Access is decided in one fixed order, for everyone: the guild must be allowed, then the user's roles, and only
then is the user a Peel admin or not. Peel admins are the configured users and roles; a guild's Administrator
permission makes a Peel admin of its holder in that guild only when `guild_admins_are_peel_admins` is set. A
user refused by the first two checks is never an admin, so a listed admin is refused in a guild that is not
allowed, like anyone else. Direct messages have no guild: with an allow-list of guilds they are refused.
"""

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """A user acting somewhere: their id, the guild they act in (None in DMs), their roles there."""

    user_id: int
    guild_id: int | None
    role_ids: frozenset[int] = frozenset()
    is_guild_admin: bool = False  # Discord's Administrator permission in `guild_id`


class Refusal(StrEnum):
    """Why a user may not use Peel here."""

    GUILD_NOT_ALLOWED = "guild_not_allowed"
    ROLE_NOT_ALLOWED = "role_not_allowed"


REFUSAL_MESSAGES: dict[Refusal, str] = {
    Refusal.GUILD_NOT_ALLOWED: "Peel isn't enabled in this server. Ask an admin to add it to the allowed servers.",
    Refusal.ROLE_NOT_ALLOWED: "You need one of the roles allowed to use Peel here. Ask a server admin for access.",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessPolicy:
    """Empty allow-lists allow everyone; Peel admins are listed users and holders of an admin role."""

    allowed_guild_ids: frozenset[int] = frozenset()
    allowed_role_ids: frozenset[int] = frozenset()
    admin_role_ids: frozenset[int] = frozenset()
    admin_user_ids: frozenset[int] = frozenset()
    export_role_ids: frozenset[int] = frozenset()
    guild_admins_are_peel_admins: bool = False

    def _is_configured_admin(self, actor: Actor) -> bool:
        if actor.user_id in self.admin_user_ids or actor.role_ids & self.admin_role_ids:
            return True
        return self.guild_admins_are_peel_admins and actor.is_guild_admin

    def refusal(self, actor: Actor) -> Refusal | None:
        """Return why `actor` may not use Peel where they are, or None when they may."""
        if self.allowed_guild_ids and actor.guild_id not in self.allowed_guild_ids:
            return Refusal.GUILD_NOT_ALLOWED
        # A Peel admin needs no allowed role: the admin roles and users are part of the allowed ones.
        has_role = bool(actor.role_ids & self.allowed_role_ids)
        if self.allowed_role_ids and not has_role and not self._is_configured_admin(actor):
            return Refusal.ROLE_NOT_ALLOWED
        return None

    def is_admin(self, actor: Actor) -> bool:
        """Tell whether `actor` may manage everyone's jobs where they are (never where Peel refuses them)."""
        return self.refusal(actor) is None and self._is_configured_admin(actor)

    def may_manage(self, actor: Actor, owner_id: int | None) -> bool:
        """Tell whether `actor` may act on something owned by `owner_id` (None: owned by no user, admins only)."""
        if self.refusal(actor) is not None:
            return False
        return (owner_id is not None and actor.user_id == owner_id) or self.is_admin(actor)

    def may_export(self, actor: Actor) -> bool:
        """Tell whether `actor` may export to a bucket (admins always; else the export roles)."""
        if self.refusal(actor) is not None:
            return False
        return self.is_admin(actor) or bool(actor.role_ids & self.export_role_ids)
