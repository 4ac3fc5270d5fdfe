"""Image links in prompts (`--sref`, `--cref`, `--oref`, bare links) fetched as references, by `/batch`'s rules.

The same URL policy as `/batch` links (`bot.net.urlfetch`: http(s) only, private and local addresses refused in
every notation, on every redirect hop and at the socket; `BATCH_FETCH_ALLOWED_NETWORKS` the operator's exceptions),
the same per-user and total download slots and timeouts, and a size cap of an attachment's (50 MB). What comes back
is checked as an image by the intake like an attachment, so a page or a file that is not a PNG, JPEG or WebP is
refused naming the link.
"""

import asyncio
from pathlib import Path

from bot.core.fetchquota import DownloadLimits, DownloadQuota
from bot.net.urlfetch import Downloads, FetchError, FetchOptions, UrlPolicy, parse_networks
from bot.settings import BotSettings

REFERENCE_MAX_BYTES = 50 * 1024 * 1024  # as an attached reference (`bot.exts.imagine._inputs.read_attachments`)


def link_downloads(s: BotSettings, *, max_bytes: int) -> Downloads:
    """Return a downloader of links users give, under the `FETCH_*` settings' slots, disk budget and timeouts.

    `/batch` ZIPs, `/describe` images and reference links each build one (each its own quota), with their own cap
    of a file's bytes.
    """
    return Downloads(
        s.data_dir / "tmp",
        DownloadQuota(
            DownloadLimits(per_user=s.fetch_max_per_user, total=s.fetch_max_total, disk_bytes=s.fetch_disk_budget_bytes)
        ),
        FetchOptions(
            max_bytes=max_bytes,
            timeout_s=s.fetch_timeout_s,
            idle_timeout_s=s.fetch_idle_timeout_s,
            min_bytes_per_s=s.fetch_min_bytes_per_s,
            slow_grace_s=s.fetch_slow_grace_s,
        ),
    )


def link_policy(s: BotSettings) -> UrlPolicy:
    """Return the URL policy of links users give: public addresses only, but `BATCH_FETCH_ALLOWED_NETWORKS`."""
    return UrlPolicy(parse_networks(s.batch_fetch_allowed_networks))


class LinkError(Exception):
    """A reference link could not be fetched; `user_message` says why."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class ReferenceLinks:
    """Fetches reference images from users' links under one quota and one URL policy."""

    def __init__(self, downloads: Downloads, policy: UrlPolicy) -> None:
        self._downloads = downloads
        self._policy = policy

    @classmethod
    def from_settings(cls, s: BotSettings) -> "ReferenceLinks":
        """Return the fetcher `/batch`'s settings describe (its networks, slots and timeouts; 50 MB a file)."""
        return cls(link_downloads(s, max_bytes=REFERENCE_MAX_BYTES), link_policy(s))

    async def fetch(self, url: str, *, user_id: int) -> bytes:
        """Return the bytes behind `url`.

        Raises:
            LinkError: the link was refused (address, scheme, size) or could not be fetched.
        """
        try:
            async with self._downloads.fetch(url, user_id=user_id, policy=self._policy, name="reference") as got:
                return await asyncio.to_thread(Path(got.path).read_bytes)
        except FetchError as exc:
            raise LinkError(exc.user_message) from exc


__all__ = ["REFERENCE_MAX_BYTES", "LinkError", "ReferenceLinks"]
