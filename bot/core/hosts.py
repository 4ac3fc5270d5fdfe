"""Where a server bound to an address can be reached: a wildcard bind is reached on the loopback address."""

# Binding to these listens on every interface, but as a URL's host they name no machine: a browser refuses
# http://0.0.0.0:8081 or reaches nothing. The machine's own loopback address reaches the server from here.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}  # noqa: S104


def url_host(bind_host: str) -> str:
    """Return the host a URL to a server bound to `bind_host` names (loopback for a wildcard; IPv6 in brackets)."""
    host = _WILDCARDS.get(bind_host, bind_host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


__all__ = ["url_host"]
