"""Settings: embedded defaults when nothing is set, secrets never shown."""

from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.core.budgets import Caps, RoleRule
from bot.settings import BotSettings


def make_settings() -> BotSettings:
    return BotSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings' init-only kwarg


def test_everything_is_embedded_when_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DISCORD_TOKEN", "RUNPOD_ENDPOINT_ID", "RUNPOD_API_KEY", "GEMINI_API_KEY", "STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = make_settings()
    assert settings.uses_playground and settings.uses_local_runpod and settings.uses_local_gemini
    assert settings.resolved_storage_url.startswith("file:///")
    assert settings.resolved_ledger_path.name == "peel.sqlite3"


def test_secrets_are_hidden_when_settings_are_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-very-secret")
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
    settings = make_settings()
    assert not settings.uses_local_runpod
    assert "rp-very-secret" not in repr(settings) and "rp-very-secret" not in str(settings.model_dump())


def test_runpod_settings_are_refused_when_only_half_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "abc123")
    with pytest.raises(ValidationError, match="RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY"):
        make_settings()


def test_runpod_base_url_is_read_when_set_under_either_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_BASE_URL", "http://127.0.0.1:9/v2")
    assert make_settings().runpod_api_base == "http://127.0.0.1:9/v2"


def test_guild_administrators_are_no_peel_admins_unless_the_setting_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUILD_ADMINS_ARE_PEEL_ADMINS", raising=False)
    assert make_settings().guild_admins_are_peel_admins is False
    monkeypatch.setenv("GUILD_ADMINS_ARE_PEEL_ADMINS", "true")
    monkeypatch.setenv("ALLOWED_GUILD_IDS", "[123]")
    settings = make_settings()
    assert settings.guild_admins_are_peel_admins is True and settings.allowed_guild_ids == [123]


def test_budget_settings_become_caps_in_micro_dollars_and_role_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_TIMEZONE", "America/Los_Angeles")
    monkeypatch.setenv("BUDGET_USER_DAILY_USD", "0.10")
    monkeypatch.setenv("BUDGET_GUILD_MONTHLY_USD", "250")
    monkeypatch.setenv("BUDGET_ROLES", '{"7": {"daily": 5, "batch": false, "models": ["m"], "max_batch_items": 50}}')
    config = make_settings().budget_config()
    assert config.tz == ZoneInfo("America/Los_Angeles")
    assert config.user == Caps(day=100_000, month=None)
    assert config.guild == Caps(day=None, month=250_000_000)
    assert config.roles == {
        7: RoleRule(caps=Caps(day=5_000_000), batch=False, models=frozenset({"m"}), max_batch_items=50)
    }


@pytest.mark.parametrize(
    ("name", "value"), [("BUDGET_TIMEZONE", "Mars/Olympus"), ("BUDGET_ROLES", '{"7": {"dayly": 5}}')]
)
def test_budget_settings_that_cannot_mean_anything_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        make_settings()
