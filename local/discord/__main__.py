"""Run the playground alone: ``python -m local.discord --port N [--token T]``.

Prints the page URL, the REST base and the bot token, so any discord.py bot can be pointed at it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from local.discord.server import Playground
from local.discord.state import DEFAULT_UPLOAD_LIMIT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m local.discord", description="A local Discord-compatible server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--token", default=None, help="the bot token the server accepts (default: a fresh Discord-shaped one, printed)"
    )
    parser.add_argument("--upload-limit", type=int, default=DEFAULT_UPLOAD_LIMIT, help="bytes per message")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep the world (history, threads, files) here across restarts"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until cancelled."""
    async with Playground(
        host=args.host, port=args.port, token=args.token, upload_limit=args.upload_limit, data_dir=args.data_dir
    ) as pg:
        sys.stdout.write(
            f"Playground:  {pg.url}\n"
            f"REST base:   {pg.api_base}\n"
            f"Gateway:     {pg.gateway_url}  (also GET {pg.api_base}/gateway/bot)\n"
            f"Bot token:   {pg.token}\n"
        )
        sys.stdout.flush()
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
