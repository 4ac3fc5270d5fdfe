"""Helpers shared by the Discord end-to-end tests: one Peel stack per module, drivers and waits."""

import io
from collections.abc import Callable
from typing import Any

import aiohttp
from PIL import Image

from local.discord.driver import InteractionHandle, Message
from tests.fakes.peel_stack import PeelStack

WAIT_S = 30.0


def png(size: int = 48, colour: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, "PNG")
    return out.getvalue()


def labels(message: Message) -> list[str]:
    return [str(b.get("label") or b.get("emoji", {}).get("name")) for b in message.buttons()]


def result_of(prompt: str, *, has: str = "U1") -> Callable[[Message], bool]:
    """Match a finished result message: the prompt's line with an image and the given button."""

    def check(m: Message) -> bool:
        return m.content.startswith(f"**{prompt}**") and bool(m.attachments) and has in labels(m)

    return check


def ephemeral_embed(m: Message) -> str:
    return " ".join(f"{e.get('title', '')} {e.get('description', '')}" for e in m.embeds) if m.is_ephemeral else ""


async def imagine(
    stack: PeelStack, prompt: str, *, user: str = "alice", channel: str = "general", **options: Any
) -> InteractionHandle:
    run = await stack.driver(user).slash("imagine", {"prompt": prompt, **options}, channel=channel)
    assert await run.wait_ack() == 5  # deferred at once
    return run


async def set_faults(stack: PeelStack, faults: dict[str, Any]) -> None:
    url = stack.rt.backends.gemini_url
    assert url is not None
    async with aiohttp.ClientSession() as http, http.post(f"{url}/admin/faults", json=faults) as resp:
        assert resp.status == 200, await resp.text()


def action_id(message: Message, action: str) -> str:
    """Return the custom id of a message's button for a Peel action (`peel:<action>:...`)."""
    return next(c for c in message.custom_ids() if c.startswith(f"peel:{action}:"))
