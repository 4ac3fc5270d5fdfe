"""Run the local Gemini server alone: `python -m local.gemini --port 8765 [--api-key K]`."""

import argparse
import logging
import os
from collections.abc import Sequence

from aiohttp import web

from local.gemini.server import LocalGemini

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the server standalone until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m local.gemini", description="A local Gemini-compatible image server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=None, help="accept only this key (default: LOCAL_GEMINI_API_KEY or any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = LocalGemini.from_env(os.environ, host=args.host, port=args.port, api_key=args.api_key)
    log.info("local Gemini on http://%s:%d (key: %s)", args.host, args.port, "fixed" if server.api_key else "any")
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
