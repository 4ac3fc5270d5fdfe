"""The bot's web server: signed links to stored files and ZIPs (`make_app`, `LinkServer`) and `link_for`."""

from bot.web.app import LinkServer, make_app
from bot.web.links import link_for

__all__ = ["LinkServer", "link_for", "make_app"]
