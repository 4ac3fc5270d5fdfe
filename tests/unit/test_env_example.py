""".env.example is what scripts/env_example.py writes from the settings classes, and every setting has help."""

import ast
from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from bot.settings import BotSettings
from scripts import env_example
from worker.gemini import GeminiSettings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("bot", "worker", "storage")


def settings_classes_in_product() -> set[str]:
    """Return `module.Class` of every class that subclasses `BaseSettings` directly in the product's sources."""
    found: set[str] = set()
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(base, ast.Name) and base.id == "BaseSettings" for base in node.bases
                ):
                    found.add(f"{module}.{node.name}")
    return found


def test_env_example_is_what_the_generator_writes() -> None:
    assert (ROOT / ".env.example").read_text() == env_example.render(), (
        ".env.example is out of date: run `make env-example`"
    )


@pytest.mark.parametrize("settings", [c for s in env_example.SECTIONS for c in s.classes], ids=lambda c: c.__name__)
def test_every_setting_has_a_description(settings: type[BaseSettings]) -> None:
    assert env_example.undescribed(settings) == []


def test_every_settings_class_is_listed_or_said_to_be_unread() -> None:
    listed = {f"{c.__module__}.{c.__qualname__}" for s in env_example.SECTIONS for c in s.classes}
    assert settings_classes_in_product() == listed | set(env_example.NOT_READ)


def test_every_setting_appears_in_env_example_with_its_default() -> None:
    text = (ROOT / ".env.example").read_text()
    for section in env_example.SECTIONS:
        for settings in section.classes:
            for name, field in settings.model_fields.items():
                line = f"# {env_example.env_name(settings, name, field)}={env_example.default_text(field)}\n"
                assert line in text, f"{settings.__name__}.{name} is missing from .env.example"


def test_a_setting_without_a_description_stops_the_generator() -> None:
    class Undocumented(BaseSettings):
        documented: int = Field(default=1, description="has help")
        bare: int = 2

    with pytest.raises(ValueError, match="bare"):
        list(env_example.setting_lines(Undocumented))


def test_names_follow_aliases_and_prefixes_and_defaults_are_written_as_pydantic_reads_them() -> None:
    bot_fields = BotSettings.model_fields
    assert env_example.env_name(BotSettings, "runpod_api_base", bot_fields["runpod_api_base"]) == ("RUNPOD_BASE_URL")
    worker_fields = WorkerSettings.model_fields
    assert env_example.env_name(WorkerSettings, "storage_url", worker_fields["storage_url"]) == ("STORAGE_URL")
    assert env_example.env_name(WorkerSettings, "log_level", worker_fields["log_level"]) == ("WORKER_LOG_LEVEL")
    assert env_example.default_text(bot_fields["allowed_guild_ids"]) == "[]"
    assert env_example.default_text(bot_fields["guild_admins_are_peel_admins"]) == "false"
    assert env_example.default_text(bot_fields["discord_token"]) == ""
    assert env_example.default_text(GeminiSettings.model_fields["api_key"]) == ""


@pytest.mark.parametrize("settings", [c for s in env_example.SECTIONS for c in s.classes], ids=lambda c: c.__name__)
def test_the_written_values_are_read_back_as_the_defaults(
    settings: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommenting a class's lines of .env.example leaves its settings at their defaults: pydantic's forms."""
    monkeypatch.chdir(ROOT / "tests")  # no .env here
    required = {name for name, field in settings.model_fields.items() if field.is_required()}
    for line in env_example.setting_lines(settings):
        name, sep, value = line.removeprefix("# ").partition("=")
        if sep and name.isupper() and name.replace("_", "").isalnum():
            monkeypatch.delenv(name, raising=False)
            if value:
                monkeypatch.setenv(name, value)
    for name in required:  # required settings are blank in the file; give them something to read
        monkeypatch.setenv(env_example.env_name(settings, name, settings.model_fields[name]), "required")
    read = settings().model_dump(exclude=required)
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in settings.model_fields.items()
        if name not in required
    }
    assert read == defaults
