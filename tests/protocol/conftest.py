"""Fixtures shared by the protocol tests: a real SQLite ledger file."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.ledger import Ledger


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
async def ledger(db_path: Path) -> AsyncIterator[Ledger]:
    ledger = await Ledger.open(db_path)
    try:
        yield ledger
    finally:
        await ledger.close()
