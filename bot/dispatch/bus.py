"""The event bus: every dispatcher event goes to every subscription."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType

from bot.core.events import Event


class Subscription:
    """One listener's event stream: `async for event in subscription`; `close()` (or `with`) to stop."""

    def __init__(self, owner: "EventBus") -> None:
        self._owner = owner
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._closed = False

    def put(self, event: Event) -> None:
        """Deliver an event (called by the bus)."""
        if not self._closed:
            self._queue.put_nowait(event)

    def drain(self) -> list[Event]:
        """Return the events delivered so far without waiting (for tests and polling front ends)."""
        events: list[Event] = []
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if event is not None:
                events.append(event)
        return events

    def close(self) -> None:
        """Stop receiving events; an `async for` over the subscription ends."""
        if not self._closed:
            self._closed = True
            self._owner.remove(self)
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventBus:
    """Fan-out of dispatcher events to subscriptions (unbounded queues: listeners must keep up)."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self) -> Subscription:
        """Return a new subscription that receives every event published from now on."""
        subscription = Subscription(self)
        self._subscriptions.append(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Forget a subscription."""
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def publish(self, event: Event) -> None:
        """Deliver an event to every subscription."""
        for subscription in list(self._subscriptions):
            subscription.put(event)
