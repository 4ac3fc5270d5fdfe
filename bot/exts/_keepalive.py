"""A backport of discord.py's fix of the heartbeat latency race (Rapptz/discord.py#10448), until a release has it.

discord.py 2.7.1's keep-alive thread asks the event loop to send each heartbeat, waits for the send to complete and
only then records its send time (`KeepAliveHandler.run`, `self._last_send = time.perf_counter()` in its `else`).
When the gateway's ACK is read on the loop before that thread wakes up (a gateway answering within microseconds,
or the thread waiting for the GIL while the loop is busy), `ack()` measures from the previous heartbeat's send
time, one whole interval (41.25 s) earlier: `bot.latency` reads 41 s and discord.py logs "Can't keep up, shard ID
None websocket is 41.3s behind" although nothing was late. Real Discord's ACK comes back after a network round
trip, tens of milliseconds, by when the thread has normally run; the race stays possible there under load, and
gateway proxies answering locally hit it all the time (Gelbpunkt/gateway-proxy#23).

Upstream fixed it in f9c66a6a (Rapptz/discord.py#10448, merged after 2.7.1, the newest release): the send time is
recorded on the loop right before the heartbeat is sent, so an ACK can never be measured against an older one.
`PeelKeepAliveHandler` is that change on 2.7.1's class, and `install` puts it where discord.py's gateway looks
the class up when HELLO arrives (`discord.gateway.KeepAliveHandler`). It installs nothing once discord.py has the
fix itself (its handler has `_send_heartbeat`), so upgrading discord.py retires it; delete this module then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import time
import traceback
from typing import Any

from discord import gateway

log = logging.getLogger(__name__)


def upstream_fixed(handler: type[gateway.KeepAliveHandler]) -> bool:
    """Tell whether `handler` already records the send time on the loop (discord.py with #10448)."""
    return hasattr(handler, "_send_heartbeat")


class PeelKeepAliveHandler(gateway.KeepAliveHandler):
    """discord.py 2.7.1's keep-alive handler with Rapptz/discord.py#10448 applied.

    `run` is 2.7.1's loop unchanged but for two lines: the heartbeat goes out through `_send_heartbeat`, and the
    send time is no longer written after the send completes (from this thread, racing `ack()` on the loop).
    """

    def run(self) -> None:
        """Heartbeat every interval until stopped, closing the socket when the gateway stopped answering."""
        while not self._stop_ev.wait(self.interval):
            if self._last_recv + self.heartbeat_timeout < time.perf_counter():
                gateway._log.warning(
                    "Shard ID %s has stopped responding to the gateway. Closing and restarting.", self.shard_id
                )
                closing = asyncio.run_coroutine_threadsafe(self.ws.close(4000), loop=self.ws.loop)
                try:
                    closing.result()
                except Exception:  # noqa: BLE001 - as 2.7.1: closing is best effort, the thread ends anyway
                    gateway._log.exception("An error occurred while stopping the gateway. Ignoring.")
                except BaseException as exc:  # noqa: BLE001 - as 2.7.1 (a cancelled close), logged, not raised
                    gateway._log.debug("A BaseException was raised while stopping the gateway", exc_info=exc)
                finally:
                    self.stop()
                return
            data = self.get_payload()
            gateway._log.debug(self.msg, self.shard_id, data["d"])
            sending = asyncio.run_coroutine_threadsafe(self._send_heartbeat(data), loop=self.ws.loop)
            try:
                self._wait_sent(sending)
            except Exception:  # noqa: BLE001 - as 2.7.1: a send that failed (socket closed) ends the heartbeats
                self.stop()

    def _wait_sent(self, sending: concurrent.futures.Future[None]) -> None:
        """Block until the heartbeat is sent, warning with the loop's stack every 10 s it is not (as 2.7.1 does)."""
        total = 0
        while True:
            try:
                sending.result(10)
                return
            except concurrent.futures.TimeoutError:
                total += 10
                try:
                    frame = sys._current_frames()[self._main_thread_id]
                except KeyError:
                    msg = self.block_msg
                else:
                    stack = "".join(traceback.format_stack(frame))
                    msg = f"{self.block_msg}\nLoop thread traceback (most recent call last):\n{stack}"
                gateway._log.warning(msg, self.shard_id, total)

    async def _send_heartbeat(self, data: Any) -> None:
        """Record the send time on the loop, then send: an ACK read after it is measured from this heartbeat."""
        self._last_send = time.perf_counter()
        await self.ws.send_heartbeat(data)


def install() -> bool:
    """Make discord.py's gateway start `PeelKeepAliveHandler` on HELLO; return whether it was installed.

    Idempotent. Nothing is installed when discord.py's own handler has the fix (a release after 2.7.1).
    """
    current = gateway.KeepAliveHandler
    if current is PeelKeepAliveHandler:
        return True
    if upstream_fixed(current):
        log.debug("discord.py records heartbeat send times on the loop itself; the backport is not installed")
        return False
    gateway.KeepAliveHandler = PeelKeepAliveHandler  # type: ignore[misc]  # the name HELLO's handler looks up
    return True
