"""The playground's Discord gateway (API v10, JSON encoding), reached as ``wss://gateway.discord.gg`` is.

It checks the connection's query (``v``, ``encoding``), honours transport compression (``zlib-stream`` and
``zstd-stream``) and sends READY and GUILD_CREATE with the fields Discord always sends; the rules and the pages of
Discord's documentation they come from are tabled in ``local/discord/README.md`` ("The gateway"). Sessions outlive
their socket: events keep buffering after a disconnect and a RESUME replays what the client missed, as on Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import WSMessage, WSMsgType, web

from local.discord.state import DM, Event, PlaygroundState

try:  # the zstd of aiohttp's speedups; without it the playground refuses zstd-stream
    from backports import zstd
except ImportError:  # pragma: no cover - present wherever aiohttp[speedups] is
    zstd = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from local.discord.rules import JSON

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_MS = 41_250
MESSAGE_CONTENT_INTENT = 1 << 15
CONTENT_FIELDS = ("content", "embeds", "attachments", "components")
API_VERSIONS = frozenset({"9", "10"})
ZLIB_STREAM, ZSTD_STREAM = "zlib-stream", "zstd-stream"
OPCODES = frozenset({1, 2, 3, 4, 6, 8})  # what a client may send: heartbeat ... request guild members
# Close codes: https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway-gateway-close-event-codes
UNKNOWN_ERROR = 4000
UNKNOWN_OPCODE = 4001
DECODE_ERROR = 4002
NOT_AUTHENTICATED = 4003
AUTHENTICATION_FAILED = 4004
ALREADY_AUTHENTICATED = 4005
INVALID_API_VERSION = 4012


class Transport:
    """How one connection's frames go out: JSON text, or binary frames through one compression stream.

    https://discord.com/developers/docs/events/gateway#transport-compression: with ``zlib-stream`` every payload
    goes through a single zlib context for the whole connection and ends with the ``Z_SYNC_FLUSH`` suffix
    ``00 00 ff ff``; with ``zstd-stream`` every websocket message is one payload of one zstd stream that stays open
    for the connection's lifetime (a flushed block, never an ended frame).
    """

    def __init__(self, compress: str | None) -> None:
        self.compress = compress
        self._zlib = zlib.compressobj() if compress == ZLIB_STREAM else None
        self._zstd = zstd.ZstdCompressor() if compress == ZSTD_STREAM and zstd is not None else None

    def encode(self, frame: str) -> str | bytes:
        """Return the websocket message carrying ``frame``."""
        data = frame.encode()
        if self._zlib is not None:
            return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        if self._zstd is not None:
            return self._zstd.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)
        return frame


def refusal(query: Mapping[str, str]) -> tuple[int, str] | None:
    """Return the close code and reason for a connection URL Discord (or the playground) refuses, else ``None``.

    The query string parameters are https://discord.com/developers/docs/events/gateway#connecting: ``v`` an
    available API version (https://discord.com/developers/docs/reference#api-versioning: 9 and 10; close 4012,
    Invalid API version), ``encoding`` ``json`` or ``etf`` (the playground speaks only JSON, so it refuses ETF
    with 4002, Decode error), ``compress`` ``zlib-stream`` or ``zstd-stream``.
    """
    if query.get("v") not in API_VERSIONS:
        return INVALID_API_VERSION, "Invalid API version."
    if query.get("encoding") != "json":
        return DECODE_ERROR, "Decode error: the playground speaks only encoding=json."
    compress = query.get("compress")
    if compress not in (None, ZLIB_STREAM, ZSTD_STREAM) or (compress == ZSTD_STREAM and zstd is None):
        return UNKNOWN_ERROR, f"Unknown transport compression {compress!r}."
    return None


def parse_frame(msg: WSMessage) -> JSON | None:
    """Return a client payload (a text or a binary frame of JSON), or ``None`` when it is not a JSON object."""
    try:
        frame = json.loads(msg.data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return frame if isinstance(frame, dict) else None


async def write_frames(
    ws: web.WebSocketResponse, outbox: asyncio.Queue[str], transport: Transport | None = None
) -> None:
    """Send queued frames in order until the socket closes (one writer per socket keeps the stream in order)."""
    transport = transport or Transport(None)
    while True:
        frame = await outbox.get()
        if ws.closed:
            return
        message = transport.encode(frame)
        try:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
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
        self.compressions: list[str | None] = []  # the transport compression each accepted connection asked for
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
        refused = refusal(request.query)
        if refused is not None:
            await ws.close(code=refused[0], message=refused[1].encode())
            return ws
        self._sockets.add(ws)
        self.compressions.append(request.query.get("compress"))
        session: GatewaySession | None = None
        outbox: asyncio.Queue[str] = asyncio.Queue()
        writer = asyncio.create_task(write_frames(ws, outbox, Transport(request.query.get("compress"))))
        try:
            outbox.put_nowait(
                json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None})
            )
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                frame = parse_frame(msg)
                close = self._close_for(frame, session)
                if close is not None:
                    await ws.close(code=close[0], message=close[1])
                    break
                assert frame is not None
                op = frame["op"]
                if op == 1:
                    outbox.put_nowait(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:
                    session = self._identify(frame.get("d") or {}, outbox, int(request.query["v"]))
                    if session is None:
                        await ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
                        break
                elif op == 6:
                    session = self._resume(frame.get("d") or {}, outbox)
                    if session is None:
                        outbox.put_nowait(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
                elif op == 8 and session is not None:
                    self._send_members(session, frame.get("d") or {})
        finally:
            if session is not None and session.outbox is outbox:
                session.outbox = None
                self._state.emit("PLAYGROUND_BOT", {"connected": self.connected > 0}, gateway=False)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._sockets.discard(ws)
        return ws

    @staticmethod
    def _close_for(frame: JSON | None, session: GatewaySession | None) -> tuple[int, bytes] | None:
        """Return the close code Discord answers a client payload with, or ``None`` when it is served."""
        if frame is None:
            return DECODE_ERROR, b"Decode error."
        op = frame.get("op")
        if op not in OPCODES:
            return UNKNOWN_OPCODE, b"Unknown opcode."
        if session is None and op not in (1, 2, 6):
            return NOT_AUTHENTICATED, b"Not authenticated."
        if session is not None and op == 2:
            return ALREADY_AUTHENTICATED, b"Already authenticated."
        return None

    def _send_members(self, session: GatewaySession, data: JSON) -> None:
        """Answer REQUEST_GUILD_MEMBERS (op 8) with one GUILD_MEMBERS_CHUNK."""
        members = [self._state.member(uid) for uid in self._state.member_roles]
        chunk: JSON = {"guild_id": self._state.guild_id, "members": members, "chunk_index": 0, "chunk_count": 1}
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        session.send_dispatch("GUILD_MEMBERS_CHUNK", chunk)

    def _ready(self, session: GatewaySession, identify: JSON, version: int) -> JSON:
        """Return READY: the fields of https://discord.com/developers/docs/events/gateway-events#ready.

        ``shard`` only when IDENTIFY sent one; the rest (``private_channels`` ...) are what Discord sends a bot
        beside the documented fields, and clients read them when present.
        """
        state = self._state
        ready: JSON = {
            "v": version,
            "user": state.bot_user,
            "guilds": [{"id": state.guild_id, "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self._url(),
            "application": {"id": state.app_id, "flags": state.app_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
        }
        if identify.get("shard") is not None:
            ready["shard"] = identify["shard"]
        return ready

    def _identify(self, data: JSON, outbox: asyncio.Queue[str], version: int) -> GatewaySession | None:
        if data.get("token") not in (self._token, f"Bot {self._token}"):
            log.warning("gateway IDENTIFY with a wrong token")
            return None
        self.identifies.append({k: v for k, v in data.items() if k != "token"})
        state = self._state
        session = GatewaySession(id=state.ids.next(), intents=int(data.get("intents") or 0), state=state)
        session.outbox = outbox
        self.sessions[session.id] = session
        session.send_dispatch("READY", self._ready(session, data, version))
        session.send_dispatch("GUILD_CREATE", state.guild_payload(session.intents))
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
