"""How the local endpoint relays what its worker processes print."""

import logging

import pytest

from local.runpod.processes import relayed_level


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("2026-12-03 06:13:09,026 ERROR asyncio | Unclosed client session", logging.WARNING),
        ("2026-12-03 06:13:09,026 CRITICAL worker | out of memory", logging.WARNING),
        ("ERROR  | abc-l1 | Captured Handler Exception", logging.WARNING),
        ("Traceback (most recent call last):", logging.WARNING),
        ("2026-12-03 06:13:09,026 WARNING worker.gemini | attempt 1 failed (RATE_LIMITED)", logging.INFO),
        ("WARN   | Signal handling is only supported in the main thread.", logging.INFO),
        ("2026-12-03 06:13:09,026 INFO worker.handler | job abc: 10 ok, 0 failed", logging.DEBUG),
        ("INFO   | abc-l1 | Started.", logging.DEBUG),
        ("client_session: <aiohttp.client.ClientSession object at 0x7f53>", logging.DEBUG),
        ("ERRORS in a prompt are not a level", logging.DEBUG),
    ],
)
def test_worker_line_is_relayed_at_its_problem_level_when_printed(line: str, level: int) -> None:
    assert relayed_level(line) == level
