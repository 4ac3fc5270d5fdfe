"""The playground's Discord gateway (API v10, JSON encoding).

discord.py always asks for ``compress=zlib-stream`` (or zstd) but only inflates *binary* frames, so plain JSON
text frames serve every client. Sessions outlive their socket: events keep buffering after a disconnect and a
RESUME replays what the client missed, as on Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from local.discord.state import DM, Event, PlaygroundState

if TYPE_CHECKING:
    from collections.abc import Callable

    from local.discord.rules import JSON

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_MS = 41_250
MESSAGE_CONTENT_INTENT = 1 << 15
CONTENT_FIELDS = ("content", "embeds", "attachments", "components")
# Close codes: https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway-gateway-close-event-codes
AUTHENTICATION_FAILED = 4004
NOT_AUTHENTICATED = 4003
ALREADY_AUTHENTICATED = 4005


async def write_frames(ws: web.WebSocketResponse, outbox: asyncio.Queue[str]) -> None:
    """Send queued text frames in order until the socket closes (one writer per socket keeps frames ordered)."""
    while True:
        frame = await outbox.get()
        if ws.closed:
            return
        try:
            await ws.send_str(frame)
        except ConnectionError:
            return


@dataclass(slots=True)
class GatewaySession:
    """One identified bot session: its intents, sequence number and the frames sent so far."""

    id: str
    intents: int
    state: PlaygroundState
    seq: int = 0
    buffer: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=2000))
    outbox: asyncio.Queue[str] | None = None
    unsubscribe: Callable[[], None] | None = None

    def on_event(self, event: Event) -> None:
        """Turn a world event into a dispatch frame if this session may receive it."""
        if not event.gateway or (event.intent and not self.intents & event.intent):
            return
        self.send_dispatch(event.name, self._filtered(event))

    def send_dispatch(self, name: str, data: JSON) -> None:
        """Queue one op-0 dispatch (serialised now, so later edits of ``data`` do not leak into it)."""
        self.seq += 1
        frame = json.dumps({"op": 0, "t": name, "s": self.seq, "d": data})
        self.buffer.append((self.seq, frame))
        if self.outbox is not None:
            self.outbox.put_nowait(frame)

    def _filtered(self, event: Event) -> JSON:
        """Blank message content without the MESSAGE_CONTENT intent, as Discord does for other users' messages."""
        data = event.data
        if event.name not in ("MESSAGE_CREATE", "MESSAGE_UPDATE") or self.intents & MESSAGE_CONTENT_INTENT:
            return data
        author = data.get("author") or {}
        channel = self.state.channels.get(data.get("channel_id", ""), {})
        mentioned = any(u["id"] == self.state.app_id for u in data.get("mentions", []))
        if author.get("id") == self.state.app_id or mentioned or channel.get("type") == DM:
            return data
        return {**data, "content": "", "embeds": [], "attachments": [], "components": []}


class Gateway:
    """Accepts bot websockets on ``/gateway`` and serves IDENTIFY, RESUME, heartbeats and dispatches."""

    def __init__(self, state: PlaygroundState, token: str, *, url: Callable[[], str]) -> None:
        self._state = state
        self._token = token
        self._url = url
        self.sessions: dict[str, GatewaySession] = {}
        self.identifies: list[JSON] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self.ready = asyncio.Event()

    @property
    def connected(self) -> int:
        """Return how many sessions have a live socket."""
        return sum(1 for s in self.sessions.values() if s.outbox is not None)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Serve one gateway websocket connection."""
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: GatewaySession | None = None
        outbox: asyncio.Queue[str] = asyncio.Queue()
        writer = asyncio.create_task(write_frames(ws, outbox))
        try:
            await ws.send_str(
                json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None})
            )
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    outbox.put_nowait(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:
                    if session is not None:
                        await ws.close(code=ALREADY_AUTHENTICATED, message=b"Already authenticated.")
                        break
                    session = self._identify(frame.get("d") or {}, outbox)
                    if session is None:
                        await ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
                        break
                elif op == 6:
                    session = self._resume(frame.get("d") or {}, outbox)
                    if session is None:
                        outbox.put_nowait(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
                elif op == 8 and session is not None:
                    members = [self._state.member(uid) for uid in self._state.member_roles]
                    chunk = {"guild_id": self._state.guild_id, "members": members, "chunk_index": 0, "chunk_count": 1}
                    if (frame.get("d") or {}).get("nonce"):
                        chunk["nonce"] = frame["d"]["nonce"]
                    session.send_dispatch("GUILD_MEMBERS_CHUNK", chunk)
                elif session is None and op not in (1, 2, 6):
                    await ws.close(code=NOT_AUTHENTICATED, message=b"Not authenticated.")
                    break
        finally:
            if session is not None and session.outbox is outbox:
                session.outbox = None
                self._state.emit("PLAYGROUND_BOT", {"connected": self.connected > 0}, gateway=False)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._sockets.discard(ws)
        return ws

    def _identify(self, data: JSON, outbox: asyncio.Queue[str]) -> GatewaySession | None:
        if data.get("token") not in (self._token, f"Bot {self._token}"):
            log.warning("gateway IDENTIFY with a wrong token")
            return None
        self.identifies.append({k: v for k, v in data.items() if k != "token"})
        state = self._state
        session = GatewaySession(id=state.ids.next(), intents=int(data.get("intents") or 0), state=state)
        session.outbox = outbox
        self.sessions[session.id] = session
        session.send_dispatch(
            "READY",
            {
                "v": 10,
                "user": state.bot_user,
                "guilds": [{"id": state.guild_id, "unavailable": True}],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": self._url(),
                "shard": data.get("shard") or [0, 1],
                "application": {"id": state.app_id, "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "user_settings": {},
            },
        )
        session.send_dispatch("GUILD_CREATE", state.guild_payload())
        session.unsubscribe = state.subscribe(session.on_event)
        log.info("bot identified (session %s, intents %d)", session.id, session.intents)
        self.ready.set()
        state.emit("PLAYGROUND_BOT", {"connected": True}, gateway=False)
        return session

    def _resume(self, data: JSON, outbox: asyncio.Queue[str]) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") not in (self._token, f"Bot {self._token}"):
            return None
        last = int(data.get("seq") or 0)
        session.outbox = outbox
        for seq, frame in session.buffer:
            if seq > last:
                outbox.put_nowait(frame)
        session.send_dispatch("RESUMED", {})
        self._state.emit("PLAYGROUND_BOT", {"connected": True}, gateway=False)
        log.info("bot resumed session %s from seq %d", session.id, last)
        return session

    async def request_reconnect(self) -> None:
        """Ask every connected client to reconnect and resume (op 7), as Discord does during maintenance."""
        for session in self.sessions.values():
            if session.outbox is not None:
                session.outbox.put_nowait(json.dumps({"op": 7, "d": None, "s": None, "t": None}))

    async def close(self) -> None:
        """Close every socket and drop every session."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutdown")
        for session in self.sessions.values():
            if session.unsubscribe is not None:
                session.unsubscribe()
        self.sessions.clear()
