"""A test driver that acts as a playground user: commands, clicks, selects, modals, reactions, messages.

Every action goes through :mod:`local.discord.actions`, the same code the browser page uses, so a test sees exactly
what a person would. Waiting is condition-based (``await driver.wait_for(lambda msgs: ...)``): it re-checks on
every change in the world and never sleeps blindly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from local.discord import actions
from local.discord.state import EPHEMERAL, LOADING, THREAD_TYPES, Interaction, PlaygroundState, Upload

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from local.discord.rules import JSON

T = TypeVar("T")
POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class Message:
    """A read-only view of one message as the driver's user sees it."""

    raw: JSON

    @property
    def id(self) -> str:
        """Return the message id."""
        return str(self.raw["id"])

    @property
    def channel_id(self) -> str:
        """Return the channel (or thread) id."""
        return str(self.raw["channel_id"])

    @property
    def content(self) -> str:
        """Return the text content."""
        return str(self.raw.get("content") or "")

    @property
    def author_id(self) -> str:
        """Return the author's user id."""
        return str(self.raw["author"]["id"])

    @property
    def embeds(self) -> list[JSON]:
        """Return the embeds."""
        return list(self.raw.get("embeds") or [])

    @property
    def attachments(self) -> list[JSON]:
        """Return the attachment objects."""
        return list(self.raw.get("attachments") or [])

    @property
    def components(self) -> list[JSON]:
        """Return the top-level components (action rows)."""
        return list(self.raw.get("components") or [])

    @property
    def reactions(self) -> dict[str, int]:
        """Return ``{emoji name: count}``."""
        return {str(r["emoji"]["name"]): int(r["count"]) for r in self.raw.get("reactions") or []}

    @property
    def is_ephemeral(self) -> bool:
        """Say whether only the interaction's user sees this message."""
        return bool(int(self.raw.get("flags") or 0) & EPHEMERAL)

    @property
    def is_loading(self) -> bool:
        """Say whether this is a deferred "thinking" message not yet answered."""
        return bool(int(self.raw.get("flags") or 0) & LOADING)

    @property
    def thread_id(self) -> str | None:
        """Return the id of the thread started from this message, if any."""
        thread = self.raw.get("thread")
        return str(thread["id"]) if thread else None

    def buttons(self) -> list[JSON]:
        """Return every button, in display order."""
        return [c for c in actions.iter_components(self.components) if c.get("type") == actions.BUTTON]

    def custom_ids(self) -> list[str]:
        """Return the custom ids of every interactive component."""
        return [str(c["custom_id"]) for c in actions.iter_components(self.components) if "custom_id" in c]

    def button(self, *, label: str | None = None, custom_id: str | None = None) -> JSON:
        """Return the button with this label or custom id."""
        for button in self.buttons():
            if (label is None or button.get("label") == label) and (
                custom_id is None or button.get("custom_id") == custom_id
            ):
                return button
        labels = [(b.get("label"), b.get("custom_id")) for b in self.buttons()]
        raise LookupError(f"no button label={label!r} custom_id={custom_id!r} on message {self.id}: {labels}")

    def __str__(self) -> str:
        files = ",".join(a["filename"] for a in self.attachments)
        extra = f" files=[{files}]" if files else ""
        extra += f" embeds={len(self.embeds)}" if self.embeds else ""
        extra += f" ids={self.custom_ids()}" if self.components else ""
        return f"[{self.id}] {self.raw['author']['username']}: {self.content!r}{extra}"


class InteractionHandle:
    """An interaction the driver started, and what the bot answered."""

    def __init__(self, driver: Driver, interaction: Interaction) -> None:
        self._driver = driver
        self.interaction = interaction

    @property
    def id(self) -> str:
        """Return the interaction id."""
        return self.interaction.id

    @property
    def token(self) -> str:
        """Return the interaction token."""
        return self.interaction.token

    @property
    def callback_type(self) -> int | None:
        """Return the callback type the bot answered with (4, 5, 6, 7, 8 or 9), if it has."""
        return self.interaction.callback_type

    @property
    def modal(self) -> JSON | None:
        """Return the modal the bot opened, if it did."""
        return self.interaction.modal

    @property
    def choices(self) -> list[JSON] | None:
        """Return the autocomplete choices the bot answered with."""
        return self.interaction.choices

    async def wait_ack(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - shared driver API
    ) -> int:
        """Wait for the initial response; raise AssertionError if the bot missed Discord's deadline."""
        await self._driver.wait_until(lambda: self.interaction.acked or self.interaction.failed, timeout=timeout)
        if not self.interaction.acked:
            raise AssertionError(f"interaction {self.id} failed: no response within the deadline")
        assert self.interaction.callback_type is not None
        return self.interaction.callback_type

    def response(self) -> Message | None:
        """Return the message the initial response created or updated, as it is now."""
        msg = self._driver.state.messages.get(self.interaction.original_id or "")
        return Message(msg) if msg is not None else None

    def followups(self) -> list[Message]:
        """Return the follow-up messages still present."""
        messages = self._driver.state.messages
        return [Message(messages[m]) for m in self.interaction.followups if m in messages]


class Driver:
    """Acts as one user of the playground (``alice`` by default)."""

    def __init__(self, state: PlaygroundState, user: str = "alice") -> None:
        self.state = state
        self.user_id: str = self.state.user_named(user)["id"]

    def as_user(self, user: str) -> Driver:
        """Return a driver acting as another user."""
        return Driver(self.state, user)

    def channel_id(self, channel: str) -> str:
        """Return the id of a channel or thread given by name or id."""
        return str(self.state.channel_named(channel)["id"])

    # ---------------------------------------------------------------- actions
    async def slash(
        self, name: str, options: Mapping[str, object] | None = None, *, channel: str = "general"
    ) -> InteractionHandle:
        """Run ``/name`` with options (str, int, float, bool, user/channel names, or :class:`Upload` files)."""
        interaction = actions.run_command(self.state, self.user_id, self.channel_id(channel), name, options)
        return InteractionHandle(self, interaction)

    async def context_menu(
        self, name: str, *, message: Message | str | None = None, user: str | None = None
    ) -> InteractionHandle:
        """Run a message or user context-menu command (Discord's "Apps" menu) on a message or a user."""
        if message is not None:
            interaction = actions.context_menu(self.state, self.user_id, name, message_id=self._message(message).id)
        else:
            target = self.state.user_named(user or "")["id"]
            interaction = actions.context_menu(self.state, self.user_id, name, target_user_id=target)
        return InteractionHandle(self, interaction)

    async def autocomplete(
        self, name: str, focused: str, options: Mapping[str, object] | None = None, *, channel: str = "general"
    ) -> InteractionHandle:
        """Type into option ``focused`` and ask the bot for choices (see :meth:`InteractionHandle.choices`)."""
        opts = dict(options or {})
        opts.setdefault(focused, "")
        interaction = actions.autocomplete(self.state, self.user_id, self.channel_id(channel), name, opts, focused)
        return InteractionHandle(self, interaction)

    async def click(
        self, message: Message | str, custom_id: str | None = None, *, label: str | None = None
    ) -> InteractionHandle:
        """Click a button, found by custom id or label."""
        msg = self._message(message)
        if custom_id is None:
            custom_id = str(msg.button(label=label)["custom_id"])
        return InteractionHandle(self, actions.click(self.state, self.user_id, msg.id, custom_id))

    async def select(self, message: Message | str, custom_id: str, values: list[str]) -> InteractionHandle:
        """Pick ``values`` in a select menu."""
        msg = self._message(message)
        return InteractionHandle(self, actions.select(self.state, self.user_id, msg.id, custom_id, values))

    async def submit_modal(self, opened_by: InteractionHandle | str, values: Mapping[str, str]) -> InteractionHandle:
        """Fill in and submit the modal the bot opened for ``opened_by``."""
        iid = opened_by.id if isinstance(opened_by, InteractionHandle) else opened_by
        return InteractionHandle(self, actions.submit_modal(self.state, self.user_id, iid, values))

    async def react(self, message: Message | str, emoji: str) -> None:
        """Add a reaction."""
        actions.react(self.state, self.user_id, self._message(message).id, emoji)

    async def unreact(self, message: Message | str, emoji: str) -> None:
        """Remove a reaction."""
        actions.react(self.state, self.user_id, self._message(message).id, emoji, add=False)

    async def send(
        self,
        channel: str,
        content: str = "",
        *,
        reply_to: Message | str | None = None,
        files: list[Upload] | None = None,
    ) -> Message:
        """Post a message in a channel or thread, optionally as a reply."""
        ref = self._message(reply_to).id if reply_to is not None else None
        msg = actions.send_message(
            self.state, self.user_id, self.channel_id(channel), content, files=files, reply_to=ref
        )
        return Message(msg)

    async def delete_channel(self, channel: str) -> None:
        """Delete a channel or thread given by name or id, as a moderator does."""
        self.state.delete_channel(self.state.channel_named(channel))

    # --------------------------------------------------------------- reading
    def messages(self, channel: str = "general") -> list[Message]:
        """Return a channel's (or thread's) messages, oldest first, as this user sees them."""
        return [Message(m) for m in self.state.messages_in(self.channel_id(channel), self.user_id)]

    def threads(self, channel: str | None = None) -> list[JSON]:
        """Return the threads (of one channel, or all)."""
        parent = self.channel_id(channel) if channel else None
        return [
            c
            for c in self.state.channels.values()
            if c["type"] in THREAD_TYPES and (parent is None or c["parent_id"] == parent)
        ]

    def attachment_bytes(self, attachment: JSON) -> bytes:
        """Return an attachment's bytes from the playground's CDN store."""
        return self.state.files[str(attachment["id"])].data

    def _message(self, message: Message | str) -> Message:
        if isinstance(message, Message):
            message = message.id
        raw = self.state.messages.get(message)
        if raw is None:
            raise LookupError(f"no message {message}")
        return Message(raw)

    async def wait_until(
        self,
        predicate: Callable[[], T],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - shared driver API
    ) -> T:
        """Return the first truthy result of ``predicate()``, re-checked after every change (and every 20 ms)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"condition not met within {timeout} s\n{self.transcript()}")
            # Wake on every world change; re-check now and then too, for conditions on the bot's side.
            await self.state.wait_changed(min(left, POLL_S))

    async def wait_for(
        self,
        predicate: Callable[[list[Message]], T],
        *,
        channel: str = "general",
        timeout: float = 5.0,  # noqa: ASYNC109 - shared driver API
    ) -> T:
        """Wait until ``predicate(messages)`` is truthy for a channel's messages and return its result."""

        def check() -> T | None:
            try:
                messages = self.messages(channel)
            except KeyError:  # the channel or thread does not exist yet
                return None
            return predicate(messages)

        found = await self.wait_until(check, timeout=timeout)
        assert found is not None  # wait_until only returns truthy results
        return found

    async def wait_for_message(
        self,
        predicate: Callable[[Message], Any],
        *,
        channel: str = "general",
        timeout: float = 5.0,  # noqa: ASYNC109 - shared driver API
    ) -> Message:
        """Wait for the newest message matching ``predicate`` in a channel or thread."""

        def find(messages: list[Message]) -> Message | None:
            return next((m for m in reversed(messages) if predicate(m)), None)

        found = await self.wait_for(find, channel=channel, timeout=timeout)
        assert found is not None  # wait_for only returns truthy results
        return found

    def transcript(self) -> str:
        """Return every channel's messages and the recent REST calls, for failure messages."""
        lines: list[str] = []
        for channel in self.state.channels.values():
            messages = self.state.messages_in(channel["id"], self.user_id)
            if messages:
                lines.append(f"#{channel.get('name', channel['id'])}:")
                lines.extend(f"  {Message(m)}" for m in messages[-20:])
        lines.append("recent REST calls:")
        lines.extend(f"  {r}" for r in list(self.state.requests)[-25:])
        return "\n".join(lines)
