"""Peel never joins voice: starting the bot logs nothing about voice libraries, and the rest of discord.py's does."""

import logging
from unittest.mock import MagicMock

import discord
import pytest

from bot.app.services import Services
from bot.discord_bot import PeelBot
from bot.exts._access import AccessPolicy


def test_starting_peel_logs_no_voice_library_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a fresh process without PyNaCl or davey (discord.py sets these flags at import when they are missing).
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    monkeypatch.setattr(Services, "of", MagicMock())  # no runtime: only the client's start is tested
    with caplog.at_level(logging.WARNING, logger="discord"):
        PeelBot(MagicMock(), access=AccessPolicy())
        logging.getLogger("discord.client").warning("other discord.py warnings still show")
    assert caplog.messages == ["other discord.py warnings still show"]
