"""The access policy: guild allowed → role allowed → admin, and who may act on a job, a batch or a group."""

import pytest

from bot.core.access import AccessPolicy, Actor, Refusal

ALLOWED_GUILD, OTHER_GUILD = 100, 200
MEMBER_ROLE, ADMIN_ROLE, EXPORT_ROLE = 1, 2, 3
OWNER, STRANGER, ADMIN_USER = 10, 11, 12


def actor(
    user_id: int = STRANGER, guild_id: int | None = ALLOWED_GUILD, *roles: int, guild_admin: bool = False
) -> Actor:
    return Actor(user_id=user_id, guild_id=guild_id, role_ids=frozenset(roles), is_guild_admin=guild_admin)


RESTRICTED = AccessPolicy(
    allowed_guild_ids=frozenset({ALLOWED_GUILD}),
    allowed_role_ids=frozenset({MEMBER_ROLE}),
    admin_role_ids=frozenset({ADMIN_ROLE}),
    admin_user_ids=frozenset({ADMIN_USER}),
    export_role_ids=frozenset({EXPORT_ROLE}),
)


def test_guild_administrator_is_refused_and_no_admin_when_the_guild_is_not_allowed() -> None:
    intruder = actor(STRANGER, OTHER_GUILD, MEMBER_ROLE, guild_admin=True)

    assert RESTRICTED.refusal(intruder) is Refusal.GUILD_NOT_ALLOWED
    assert not RESTRICTED.is_admin(intruder)
    assert not RESTRICTED.may_manage(intruder, OWNER)
    assert not RESTRICTED.may_export(intruder)


def test_guild_administrator_is_no_peel_admin_when_the_setting_is_off() -> None:
    policy = AccessPolicy()
    assert policy.refusal(actor(guild_admin=True)) is None
    assert not policy.is_admin(actor(guild_admin=True))


def test_guild_administrator_is_peel_admin_in_an_allowed_guild_when_the_setting_is_on() -> None:
    policy = AccessPolicy(allowed_guild_ids=frozenset({ALLOWED_GUILD}), guild_admins_are_peel_admins=True)

    assert policy.is_admin(actor(STRANGER, ALLOWED_GUILD, guild_admin=True))
    assert not policy.is_admin(actor(STRANGER, OTHER_GUILD, guild_admin=True))


@pytest.mark.parametrize(
    "who",
    [actor(ADMIN_USER, OTHER_GUILD), actor(STRANGER, OTHER_GUILD, ADMIN_ROLE), actor(ADMIN_USER, None)],
    ids=["admin-user-elsewhere", "admin-role-elsewhere", "admin-user-in-dms"],
)
def test_configured_admin_is_refused_when_the_guild_is_not_allowed(who: Actor) -> None:
    assert RESTRICTED.refusal(who) is Refusal.GUILD_NOT_ALLOWED
    assert not RESTRICTED.is_admin(who)


def test_configured_admins_are_admins_without_an_allowed_role_when_the_guild_is_allowed() -> None:
    assert RESTRICTED.is_admin(actor(ADMIN_USER))
    assert RESTRICTED.is_admin(actor(STRANGER, ALLOWED_GUILD, ADMIN_ROLE))


def test_user_without_an_allowed_role_is_refused_when_roles_are_restricted() -> None:
    assert RESTRICTED.refusal(actor(STRANGER, ALLOWED_GUILD)) is Refusal.ROLE_NOT_ALLOWED
    assert RESTRICTED.refusal(actor(STRANGER, ALLOWED_GUILD, MEMBER_ROLE)) is None


def test_everyone_may_use_peel_and_nobody_is_admin_when_nothing_is_configured() -> None:
    policy = AccessPolicy()
    assert policy.refusal(actor(STRANGER, None)) is None
    assert not policy.is_admin(actor(STRANGER, OTHER_GUILD, ADMIN_ROLE, guild_admin=True))


def test_may_manage_only_own_things_or_as_admin_when_acting_on_an_owned_thing() -> None:
    assert RESTRICTED.may_manage(actor(OWNER, ALLOWED_GUILD, MEMBER_ROLE), OWNER)
    assert not RESTRICTED.may_manage(actor(STRANGER, ALLOWED_GUILD, MEMBER_ROLE), OWNER)
    assert RESTRICTED.may_manage(actor(ADMIN_USER), OWNER)
    assert not RESTRICTED.may_manage(actor(OWNER, OTHER_GUILD, MEMBER_ROLE), OWNER)  # the guild comes first


def test_only_admins_may_manage_when_the_thing_has_no_owner() -> None:
    assert not RESTRICTED.may_manage(actor(STRANGER, ALLOWED_GUILD, MEMBER_ROLE), None)
    assert RESTRICTED.may_manage(actor(ADMIN_USER), None)


def test_may_export_with_an_export_role_or_as_admin_when_allowed_here() -> None:
    assert RESTRICTED.may_export(actor(STRANGER, ALLOWED_GUILD, MEMBER_ROLE, EXPORT_ROLE))
    assert RESTRICTED.may_export(actor(ADMIN_USER))
    assert not RESTRICTED.may_export(actor(STRANGER, ALLOWED_GUILD, MEMBER_ROLE))
    assert not RESTRICTED.may_export(actor(STRANGER, OTHER_GUILD, MEMBER_ROLE, EXPORT_ROLE))
