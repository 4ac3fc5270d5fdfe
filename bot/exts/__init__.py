"""discord.py extensions, one package per feature; modules starting with `_` are shared helpers, not extensions."""

EXTENSIONS: tuple[str, ...] = (
    "bot.exts.imagine",
    "bot.exts.describe",
    "bot.exts.account",
    "bot.exts.batch",
    "bot.exts.groups",
    "bot.exts.alerts",
    "bot.exts.budget",
    "bot.exts.prefer",
    "bot.exts.show",
    "bot.exts.help",
)
