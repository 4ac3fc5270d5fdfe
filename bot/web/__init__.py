"""The bot's web server: signed links to stored files and ZIPs (`make_app`, `LinkServer`), `link_for`, probes.

`/healthz` says the process lives; `/readyz` runs the `Readiness` checks its owners registered.
"""

from bot.web.app import LinkServer, make_app
from bot.web.links import link_for
from bot.web.readiness import Readiness, ReadinessReport

__all__ = ["LinkServer", "Readiness", "ReadinessReport", "link_for", "make_app"]
