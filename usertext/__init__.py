"""Rules for text that comes from users, shared by every layer (pure: imports nothing of Peel, no I/O).

`controls` drops the characters that make echoed text or a file name lie about itself; `names` turns uploaded and
prompt-derived names into safe, unique archive member names. The bot's core (messages, manifests) and storage (the
ZIP writer, upload intake) apply the same rules, so they live below both: the core may not import storage, and
storage may not import the bot.
"""
