"""`export_storage_env`: the store's own settings (`STORAGE_*`) may live in `.env` like every other setting."""

import os
from pathlib import Path

import pytest

from bot.settings import export_storage_env


def test_storage_variables_of_the_env_file_reach_the_environment_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "STORAGE_ACCESS_KEY_ID=from-file\nSTORAGE_REGION=eu-west-1\nDISCORD_TOKEN=not-copied\n"
        "STORAGE_INTAKE_MAX_ENTRIES=5\n"
    )
    # A private copy of the environment: what the function copies in must not outlive the test. (A monkeypatch
    # `delenv` of a variable it did not see set records nothing, and a `delenv` after the copy would restore it.)
    unrelated = ("STORAGE_ACCESS_KEY_ID", "STORAGE_INTAKE_MAX_ENTRIES", "DISCORD_TOKEN")
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in unrelated})
    os.environ["STORAGE_REGION"] = "us-east-1"

    copied = export_storage_env(env_file)

    assert sorted(copied) == ["STORAGE_ACCESS_KEY_ID", "STORAGE_INTAKE_MAX_ENTRIES"]
    assert os.environ["STORAGE_ACCESS_KEY_ID"] == "from-file"
    assert os.environ["STORAGE_REGION"] == "us-east-1"  # already set: the environment wins
    assert "DISCORD_TOKEN" not in os.environ  # only the store's settings are copied


def test_a_missing_env_file_copies_nothing(tmp_path: Path) -> None:
    assert export_storage_env(tmp_path / "absent.env") == []
