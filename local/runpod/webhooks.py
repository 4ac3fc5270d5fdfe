"""The `webhook` of a `/run` request: RunPod POSTs the job's final `/status` body to it.

RunPod's rule (https://docs.runpod.io/serverless/endpoints/send-requests, "Webhook notifications"): the POST carries
the same information as `/status/{job_id}`; the webhook "should return a 200 status code"; if the call fails RunPod
"will retry up to 2 more times with a 10-second delay between attempts". Only a 200 ends the retries here.

RunPod calls the webhook from its cloud, so it can never reach a loopback or private address. The stand-in accepts
such a URL (as RunPod does) but, by default, delivers nothing to it and logs why: a bot that relied on a webhook to
`127.0.0.1` would hear nothing from the real service either. `LocalEndpoint(webhook_allow_private=True)` lets tests
receive webhooks on 127.0.0.1.
"""

import asyncio
import ipaddress
import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

WEBHOOK_ATTEMPTS = 3  # the first call and "up to 2 more"
WEBHOOK_RETRY_DELAY_S = 10.0


def webhook_problem(url: object) -> str | None:
    """Return why `url` cannot be a webhook (not an absolute http(s) URL), or None."""
    if not isinstance(url, str):
        return "'webhook' must be a string"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "'webhook' must be an absolute http or https URL"
    return None


def is_private(url: str) -> bool:
    """Tell whether the webhook's host is one RunPod's cloud cannot reach (loopback, private, link-local)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: RunPod resolves it; the stand-in does not guess where it points
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


async def deliver(
    http: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, object],
    *,
    attempts: int = WEBHOOK_ATTEMPTS,
    delay_s: float = WEBHOOK_RETRY_DELAY_S,
) -> bool:
    """POST `body` to `url` until it answers 200, at most `attempts` times `delay_s` apart; return whether it did."""
    for attempt in range(1, attempts + 1):
        try:
            async with http.post(url, json=dict(body), timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status == 200:
                    return True
                reason = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
        log.warning("webhook %s attempt %d/%d failed: %s", url, attempt, attempts, reason)
        if attempt < attempts:
            await asyncio.sleep(delay_s)
    return False
