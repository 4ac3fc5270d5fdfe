"""Reading the local gateway's websocket in tests: one JSON text frame, or the close code it ends with."""

import json
from typing import Any

import aiohttp


async def text_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """Return the next frame, which must be a JSON text frame (no compression asked)."""
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes the socket; return its close code."""
    while (await ws.receive(timeout=5)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
        pass
    return ws.close_code
