"""A test driver for a playground running in another process (``python -m local.discord`` or ``make run``).

It speaks the page's HTTP API, so it does exactly what a person at the page does; waits re-check on every event
the page's websocket pushes. In-process tests should prefer :class:`local.discord.driver.Driver`.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from local.discord.driver import Message
from local.discord.state import Upload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from local.discord.rules import JSON

T = TypeVar("T")
V = TypeVar("V")


class RemoteActionError(RuntimeError):
    """The playground refused an action (the reason Discord's client would give)."""


class RemoteDriver:
    """Acts as one playground user over HTTP: ``async with RemoteDriver(url, "alice") as alice: ...``."""

    def __init__(self, url: str, user: str = "alice", *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/") + "/"
        self.user = user
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RemoteDriver:
        self._http = aiohttp.ClientSession(base_url=self.url, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        """Return the open session."""
        if self._http is None:
            raise RuntimeError("use RemoteDriver in 'async with'")
        return self._http

    async def snapshot(self) -> JSON:
        """Return the page's view of the world for this user."""
        async with self.http.get("playground/api/state", params={"user": self.user}) as resp:
            resp.raise_for_status()
            data: JSON = await resp.json()
            return data

    async def channel_id(self, channel: str) -> str:
        """Return the id of a channel or thread given by name or id."""
        for c in (await self.snapshot())["channels"]:
            if channel in (c["id"], c.get("name")):
                return str(c["id"])
        raise KeyError(f"no channel {channel!r}")

    async def _post(self, action: str, body: JSON, files: list[Upload] | None = None) -> JSON:
        body = {"user": self.user, **body}
        data: Any
        if files:
            form = aiohttp.FormData(quote_fields=False)
            form.add_field("payload_json", json.dumps(body), content_type="application/json")
            for i, upload in enumerate(files):
                kind = upload.content_type or "application/octet-stream"
                form.add_field(f"files[{i}]", upload.data, filename=upload.filename, content_type=kind)
            data = form
        else:
            data = aiohttp.JsonPayload(body)
        async with self.http.post(f"playground/api/{action}", data=data) as resp:
            out: JSON = await resp.json()
            if resp.status != 200:
                raise RemoteActionError(out.get("error") or out.get("message") or str(resp.status))
            return out

    async def slash(self, name: str, options: Mapping[str, object] | None = None, *, channel: str = "general") -> str:
        """Run ``/name``; :class:`Upload` values become attachment options. Return the interaction id."""
        plain = {k: v for k, v in (options or {}).items() if not isinstance(v, Upload)}
        uploads = {k: v for k, v in (options or {}).items() if isinstance(v, Upload)}
        body = {
            "channel_id": await self.channel_id(channel),
            "name": name,
            "options": plain,
            "file_options": list(uploads),
        }
        return str((await self._post("command", body, list(uploads.values())))["interaction_id"])

    async def click(self, message: Message | str, custom_id: str | None = None, *, label: str | None = None) -> str:
        """Click a button by custom id, or by label on a :class:`Message`. Return the interaction id."""
        if custom_id is None:
            if not isinstance(message, Message):
                raise TypeError("clicking by label needs a Message")
            custom_id = str(message.button(label=label)["custom_id"])
        mid = message.id if isinstance(message, Message) else message
        return str((await self._post("click", {"message_id": mid, "custom_id": custom_id}))["interaction_id"])

    async def select(self, message: Message | str, custom_id: str, values: list[str]) -> str:
        """Pick values in a select menu. Return the interaction id."""
        mid = message.id if isinstance(message, Message) else message
        body = {"message_id": mid, "custom_id": custom_id, "values": values}
        return str((await self._post("select", body))["interaction_id"])

    async def submit_modal(self, interaction_id: str, values: Mapping[str, str]) -> str:
        """Submit the modal the bot opened for ``interaction_id``. Return the new interaction id."""
        body = {"interaction_id": interaction_id, "values": dict(values)}
        return str((await self._post("modal", body))["interaction_id"])

    async def send(
        self, channel: str, content: str = "", *, reply_to: str | None = None, files: list[Upload] | None = None
    ) -> str:
        """Post a message as this user. Return its id."""
        body = {"channel_id": await self.channel_id(channel), "content": content, "reply_to": reply_to}
        return str((await self._post("message", body, files))["message_id"])

    async def react(self, message_id: str, emoji: str, *, add: bool = True) -> None:
        """Add or remove a reaction."""
        await self._post("react", {"message_id": message_id, "emoji": emoji, "add": add})

    async def interaction(self, interaction_id: str) -> JSON:
        """Return what the bot answered so far (``acked``, ``callback_type``, ``modal``, ``choices``...)."""
        async with self.http.get(f"playground/api/interactions/{interaction_id}") as resp:
            resp.raise_for_status()
            data: JSON = await resp.json()
            return data

    async def wait_ack(self, interaction_id: str, *, timeout: float = 10.0) -> JSON:  # noqa: ASYNC109
        """Wait for the bot's first response to an interaction and return it; raise if the deadline passed."""
        found = await self._wait(lambda: self.interaction(interaction_id), lambda i: i["acked"] or i["failed"], timeout)
        if not found["acked"]:
            raise AssertionError(f"interaction {interaction_id} failed: no response within the deadline")
        return found

    async def messages(self, channel: str = "general") -> list[Message]:
        """Return a channel's (or thread's) messages as this user sees them."""
        snapshot = await self.snapshot()
        cid = next((c["id"] for c in snapshot["channels"] if channel in (c["id"], c.get("name"))), None)
        return [Message(m) for m in snapshot["messages"].get(cid, [])] if cid else []

    async def wait_for(
        self,
        predicate: Callable[[list[Message]], T],
        *,
        channel: str = "general",
        timeout: float = 10.0,  # noqa: ASYNC109 - shared driver API
    ) -> T:
        """Wait until ``predicate(messages)`` is truthy, re-checking on every pushed event."""
        try:
            messages = await self._wait(lambda: self.messages(channel), predicate, timeout)
        except TimeoutError:
            lines = "\n".join(f"  {m}" for m in await self.messages(channel))
            raise AssertionError(f"condition not met within {timeout} s in {channel}:\n{lines}") from None
        return predicate(messages)

    async def wait_for_message(
        self,
        predicate: Callable[[Message], object],
        *,
        channel: str = "general",
        timeout: float = 10.0,  # noqa: ASYNC109 - shared driver API
    ) -> Message:
        """Wait for the newest message matching ``predicate`` in a channel or thread."""

        def find(messages: list[Message]) -> Message | None:
            return next((m for m in reversed(messages) if predicate(m)), None)

        found = await self.wait_for(find, channel=channel, timeout=timeout)
        assert found is not None  # wait_for only returns truthy results
        return found

    async def _wait(self, fetch: Callable[[], Awaitable[V]], check: Callable[[V], object], timeout_s: float) -> V:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with self.http.ws_connect("playground/ws") as ws:  # connected first, so no event is missed
            while True:
                value = await fetch()
                if check(value):
                    return value
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                try:
                    await ws.receive(timeout=min(left, 1.0))
                except TimeoutError:
                    continue
