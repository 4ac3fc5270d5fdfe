"""The playground's Discord gateway (API v10, JSON encoding), reached as ``wss://gateway.discord.gg`` is.

It checks the connection's query (``v``, ``encoding``), honours transport compression (``zlib-stream`` and
``zstd-stream``) and sends READY and GUILD_CREATE with the fields Discord always sends. It holds a client to
Discord's rules (https://discord.com/developers/docs/events/gateway and
https://discord.com/developers/docs/topics/opcodes-and-status-codes): 120 events per 60 s per connection (4008), a
heartbeat within the interval (4009), IDENTIFY first and once (4003, 4005), known opcodes and payloads (4001,
4002), the right token (4004), valid intents (4013) and privileged intents only as the application's flags enable
them (4014). The rules and the pages they come from are tabled in ``local/discord/README.md`` ("The gateway").
Sessions outlive their socket: events keep buffering after a disconnect and a RESUME replays what the client
missed, as on Discord.
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

from local.discord import members
from local.discord.ratelimit import Limit, RateLimiter
from local.discord.state import DM, Event, PlaygroundState

try:  # the zstd of aiohttp's speedups; without it the playground refuses zstd-stream
    from backports import zstd
except ImportError:  # pragma: no cover - present wherever aiohttp[speedups] is
    zstd = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from local.discord.rules import JSON

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_MS = 41_250  # what Discord's HELLO says today (events/gateway#hello-event)
MESSAGE_CONTENT_INTENT = 1 << 15
# Every intent of https://discord.com/developers/docs/events/gateway#list-of-intents: bits 0-16, 20, 21, 24, 25.
KNOWN_INTENTS = sum(1 << bit for bit in (*range(17), 20, 21, 24, 25))
# Privileged intent -> the application flags that enable it, the full and the "_LIMITED" (under 100 servers) one
# (https://discord.com/developers/docs/events/gateway#privileged-intents,
# https://discord.com/developers/docs/resources/application#application-object-application-flags).
PRIVILEGED_INTENTS: dict[int, tuple[str, int]] = {
    members.GUILD_MEMBERS: ("GUILD_MEMBERS", (1 << 14) | (1 << 15)),
    members.GUILD_PRESENCES: ("GUILD_PRESENCES", (1 << 12) | (1 << 13)),
    MESSAGE_CONTENT_INTENT: ("MESSAGE_CONTENT", (1 << 18) | (1 << 19)),
}
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
RATE_LIMITED = 4008
SESSION_TIMED_OUT = 4009
INVALID_API_VERSION = 4012
INVALID_INTENTS = 4013
DISALLOWED_INTENTS = 4014
SENDS_PER_CONNECTION = Limit(120, 60.0)
WHOLE_MEMBER_LIST_PER_GUILD = Limit(1, 30.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayLimits:
    """The gateway's limits; the defaults are Discord's, and tests shrink them instead of waiting.

    Attributes:
        heartbeat_interval_ms: the ``heartbeat_interval`` HELLO sends (events/gateway#hello-event).
        heartbeat_grace: how many intervals may pass without a heartbeat before the socket is closed with 4009.
            A client sends its first heartbeat ``interval * jitter`` (jitter in [0, 1)) after HELLO and then one
            every interval (events/gateway#sending-heartbeats), so a live client is never more than one interval
            late; the half interval more absorbs scheduling delay on a loaded machine, so the rule is strict
            without being flaky.
        sends: events a client may send per connection ("120 gateway events per connection every 60 seconds",
            events/gateway#rate-limiting); one more closes the socket with 4008.
        member_list: requests for a guild's whole member list (op 8 with ``query`` "" and ``limit`` 0) per guild
            (1 per 30 s: the changelog "Introducing Rate Limit When Requesting All Guild Members", 2025-08-14).
    """

    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS
    heartbeat_grace: float = 1.5
    sends: Limit = SENDS_PER_CONNECTION
    member_list: Limit = WHOLE_MEMBER_LIST_PER_GUILD

    @property
    def heartbeat_deadline_s(self) -> float:
        """Return how long the gateway waits for a heartbeat before it closes the socket."""
        return self.heartbeat_interval_ms / 1000 * self.heartbeat_grace


def intents_refusal(intents: object, app_flags: int) -> tuple[int, bytes] | None:
    """Return the close code for IDENTIFY's ``intents``, or ``None`` when the application may have them.

    ``intents`` is required since API v8 (events/gateway-events#identify; omitted, Discord closes with 4013:
    discord/discord-api-docs#2114); a value that is not a non-negative integer of known intent bits is 4013
    "Invalid intent(s)"; a privileged intent the application's flags do not enable is 4014 "Disallowed intent(s)"
    (topics/opcodes-and-status-codes#gateway-gateway-close-event-codes).
    """
    if not isinstance(intents, int) or isinstance(intents, bool) or intents < 0 or intents & ~KNOWN_INTENTS:
        return INVALID_INTENTS, b"Invalid intent(s)."
    for intent, (name, flags) in PRIVILEGED_INTENTS.items():
        if intents & intent and not app_flags & flags:
            return DISALLOWED_INTENTS, f"Disallowed intent(s): {name} is not enabled for the application.".encode()
    return None


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

    def __init__(
        self,
        state: PlaygroundState,
        token: str,
        *,
        url: Callable[[], str],
        limits: GatewayLimits | None = None,
    ) -> None:
        self._state = state
        self._token = token
        self._url = url
        self.limits = limits or GatewayLimits()
        self._sends = RateLimiter(self.limits.sends.limit, self.limits.sends.window_s, "gateway-send", state.clock)
        self._member_lists = RateLimiter(
            self.limits.member_list.limit, self.limits.member_list.window_s, "request-guild-members", state.clock
        )
        self._connections = 0
        self.heartbeats = 0  # heartbeats (op 1) received from clients, on any connection
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
        self._connections += 1
        connection = str(self._connections)
        hello = {"heartbeat_interval": self.limits.heartbeat_interval_ms}
        try:
            outbox.put_nowait(json.dumps({"op": 10, "d": hello, "s": None, "t": None}))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.limits.heartbeat_deadline_s
            while True:
                try:
                    msg = await ws.receive(timeout=max(0.0, deadline - loop.time()))
                except TimeoutError:
                    # No heartbeat within the interval: Discord drops the connection and the session with it
                    # (4009, "Your session timed out. Reconnect and start a new one.").
                    if session is not None:
                        self._end_session(session)
                    await ws.close(code=SESSION_TIMED_OUT, message=b"Session timed out.")
                    break
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                frame = parse_frame(msg)
                close = self._close_for(frame, session, connection)
                if close is not None:
                    await ws.close(code=close[0], message=close[1])
                    break
                assert frame is not None
                op = frame["op"]
                if op == 1:
                    self.heartbeats += 1
                    deadline = loop.time() + self.limits.heartbeat_deadline_s
                    outbox.put_nowait(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:
                    identified = self._identify(frame.get("d") or {}, outbox, int(request.query["v"]))
                    if isinstance(identified, tuple):
                        await ws.close(code=identified[0], message=identified[1])
                        break
                    session = identified
                elif op == 6:
                    session = self._resume(frame.get("d") or {}, outbox)
                    if session is None:
                        outbox.put_nowait(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
                elif op == 8 and session is not None:
                    self._request_members(session, frame["d"])
        finally:
            if session is not None and session.outbox is outbox:
                session.outbox = None
                self._state.emit("PLAYGROUND_BOT", {"connected": self.connected > 0}, gateway=False)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._sockets.discard(ws)
        return ws

    def _close_for(
        self, frame: JSON | None, session: GatewaySession | None, connection: str
    ) -> tuple[int, bytes] | None:
        """Return the close code Discord answers a client payload with, or ``None`` when it is served.

        Every payload counts against the connection's send limit first: past it Discord closes with 4008
        whatever the payload was (events/gateway#rate-limiting).
        """
        if not self._sends.hit(connection).allowed:
            return RATE_LIMITED, b"Rate limited."
        if frame is None:
            return DECODE_ERROR, b"Decode error."
        op = frame.get("op")
        if op not in OPCODES:
            return UNKNOWN_OPCODE, b"Unknown opcode."
        if session is None and op not in (1, 2, 6):
            return NOT_AUTHENTICATED, b"Not authenticated."
        if session is not None and op == 2:
            return ALREADY_AUTHENTICATED, b"Already authenticated."
        if op == 8 and members.invalid_request(frame.get("d")) is not None:
            # 4001 is also "an invalid payload for an opcode" (topics/opcodes-and-status-codes).
            return UNKNOWN_OPCODE, f"Invalid payload: {members.invalid_request(frame.get('d'))}.".encode()
        return None

    def _request_members(self, session: GatewaySession, data: JSON) -> None:
        """Answer REQUEST_GUILD_MEMBERS (op 8) as :mod:`local.discord.members` tables it."""
        if str(data["guild_id"]) != self._state.guild_id:
            return  # not a guild of the bot's: nothing to send
        if members.wants_whole_list(data):
            if not session.intents & members.GUILD_MEMBERS:
                log.warning("op 8 asked for the whole member list without the GUILD_MEMBERS intent: no answer")
                return
            limited = self._member_lists.hit(f"{self._token}:{data['guild_id']}")
            if not limited.allowed:
                meta: JSON = {"guild_id": self._state.guild_id}
                nonce = members.reply_nonce(data)
                if nonce is not None:
                    meta["nonce"] = nonce
                retry_after = round(limited.reset_after_s, 3)
                session.send_dispatch("RATE_LIMITED", {"opcode": 8, "retry_after": retry_after, "meta": meta})
                return
        for chunk in members.member_chunks(self._state, data, session.intents):
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

    def _identify(self, data: JSON, outbox: asyncio.Queue[str], version: int) -> GatewaySession | tuple[int, bytes]:
        """Start a session, or return the close code IDENTIFY is refused with (4004 token, 4013/4014 intents)."""
        if data.get("token") not in (self._token, f"Bot {self._token}"):
            log.warning("gateway IDENTIFY with a wrong token")
            return AUTHENTICATION_FAILED, b"Authentication failed."
        refused = intents_refusal(data.get("intents"), self._state.app_flags)
        if refused is not None:
            log.warning("gateway IDENTIFY refused: %s", refused[1].decode())
            return refused
        self.identifies.append({k: v for k, v in data.items() if k != "token"})
        state = self._state
        session = GatewaySession(id=state.ids.next(), intents=int(data["intents"]), state=state)
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

    def _end_session(self, session: GatewaySession) -> None:
        """Forget a session, so that a RESUME of it is answered with op 9 (Invalid Session)."""
        if session.unsubscribe is not None:
            session.unsubscribe()
            session.unsubscribe = None
        self.sessions.pop(session.id, None)

    def request_heartbeat(self) -> None:
        """Send op 1 to every connected client, which must answer with a heartbeat at once.

        "The gateway may request a heartbeat from the app in some situations by sending an Opcode 1 Heartbeat"
        (events/gateway#heartbeat-requests).
        """
        for session in self.sessions.values():
            if session.outbox is not None:
                session.outbox.put_nowait(json.dumps({"op": 1, "d": session.seq, "s": None, "t": None}))

    async def request_reconnect(self) -> None:
        """Ask every connected client to reconnect and resume (op 7), as Discord does during maintenance."""
        for session in self.sessions.values():
            if session.outbox is not None:
                session.outbox.put_nowait(json.dumps({"op": 7, "d": None, "s": None, "t": None}))

    def accept_token(self, token: str) -> None:
        """Accept ``token`` from now on (a playground that loaded its bot's id from disk derives a new one)."""
        self._token = token

    async def close(self) -> None:
        """Close every socket and drop every session."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutdown")
        for session in self.sessions.values():
            if session.unsubscribe is not None:
                session.unsubscribe()
        self.sessions.clear()
