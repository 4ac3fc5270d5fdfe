"""URLs to a server name a host that reaches it: never the wildcard it is bound to."""

import pytest

from bot.core.hosts import url_host


@pytest.mark.parametrize(
    ("bound", "host"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("", "127.0.0.1"),
        ("::", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("10.0.0.5", "10.0.0.5"),
        ("::1", "[::1]"),
        ("peel.example", "peel.example"),
    ],
)
def test_url_host_is_reachable_when_bound(bound: str, host: str) -> None:
    assert url_host(bound) == host
