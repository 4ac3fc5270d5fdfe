"""discord.py 2.7 imports the stdlib's deprecated ``audioop``; import it once without turning that into an error."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord  # noqa: F401
