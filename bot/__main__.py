"""Composition root: `python -m bot`."""

import logging
import sys


def main() -> int:
    """Start Peel with what exists so far."""
    if sys.argv[1:2] in (["batch"], ["imagine"]):  # headless sub-commands (bot/cli.py)
        import bot.cli

        return bot.cli.main(sys.argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("peel").info("Peel foundation is in place; the bot itself arrives with later issues.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
