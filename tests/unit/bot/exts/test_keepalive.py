"""The heartbeat latency race of discord.py 2.7.1 (Rapptz/discord.py#10448) cannot make Peel log "Can't keep up".

The gateway's ACK is read on the loop inside the send itself, before the keep-alive thread can run again: the
ordering a gateway answering within microseconds produces. The previous heartbeat went out one interval earlier.
"""

import asyncio
import logging
import time
from typing import Any
from unittest.mock import MagicMock

import pytest
from discord import gateway

from bot.app.services import Services
from bot.discord_bot import PeelBot
from bot.exts import _keepalive
from bot.exts._access import AccessPolicy

INTERVAL_S = 41.25  # Discord's heartbeat interval


class InstantGateway:
    """The websocket side of a keep-alive handler whose heartbeat is acknowledged before the send returns."""

    HEARTBEAT = 1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread_id = 0
        self._max_heartbeat_timeout = 60.0
        self.sequence = 7
        self.handler: gateway.KeepAliveHandler | None = None
        self.sent: list[Any] = []

    async def send_heartbeat(self, data: Any) -> None:
        self.sent.append(data)
        assert self.handler is not None
        self.handler.ack()  # the ACK, read on the loop before the thread records anything
        self.handler.stop()  # one heartbeat is enough

    async def close(self, code: int = 1000) -> None:
        raise AssertionError("the gateway answered: nothing closes")


async def beat_once(handler_class: type[gateway.KeepAliveHandler]) -> gateway.KeepAliveHandler:
    """Run one heartbeat of `handler_class` against `InstantGateway`, the previous one an interval ago."""
    ws = InstantGateway(asyncio.get_running_loop())
    handler = handler_class(ws=ws, interval=0.0)  # type: ignore[arg-type]  # the attributes the handler reads
    ws.handler = handler
    handler._last_send = time.perf_counter() - INTERVAL_S
    handler.start()
    await asyncio.to_thread(handler.join, 10)
    assert ws.sent == [{"op": 1, "d": 7}]
    return handler


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> type[gateway.KeepAliveHandler]:
    """Start a PeelBot as `python -m bot` does and return the handler class discord.py's gateway will use."""
    monkeypatch.setattr(gateway, "KeepAliveHandler", gateway.KeepAliveHandler)  # put back after the test
    monkeypatch.setattr(Services, "of", MagicMock())  # no runtime: only the client's start is tested
    PeelBot(MagicMock(), access=AccessPolicy())
    return gateway.KeepAliveHandler


async def test_an_instant_ack_is_no_interval_of_latency(
    installed: type[gateway.KeepAliveHandler], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="discord.gateway"):
        handler = await beat_once(installed)
    assert handler.latency < 1.0
    assert not [m for m in caplog.messages if "Can't keep up" in m]


def test_the_backport_retires_once_discord_py_has_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fixed(gateway.KeepAliveHandler):
        async def _send_heartbeat(self, data: Any) -> None:  # what #10448 added
            await self.ws.send_heartbeat(data)

    monkeypatch.setattr(gateway, "KeepAliveHandler", Fixed)
    assert _keepalive.install() is False
    assert gateway.KeepAliveHandler is Fixed
