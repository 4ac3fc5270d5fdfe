"""Imports done before any event loop runs: discord.py (with its deprecated `audioop`) and Peel's extensions.

`PeelBot.setup_hook` loads the extensions inside the loop; importing a module reads files, which the `blockbuster`
fixture would report as blocking, so they are imported here once, at collection.
"""

import importlib
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord  # noqa: F401

from bot.exts import EXTENSIONS

for _name in EXTENSIONS:
    importlib.import_module(_name)
