"""The bot's web server: signed links to stored files and ZIPs (`make_app`, `LinkServer`), `link_for`, probes.

`StableLinks` makes links that never expire and redirect to a fresh signed link (`/l/{token}`).

`/healthz` says the process lives; `/readyz` runs the `Readiness` checks its owners registered.
"""

from bot.web.app import LinkServer, make_app
from bot.web.links import link_for
from bot.web.readiness import Readiness, ReadinessReport
from bot.web.stable import StableLinks

__all__ = ["LinkServer", "Readiness", "ReadinessReport", "StableLinks", "link_for", "make_app"]
