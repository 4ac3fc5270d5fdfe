"""A local Gemini-compatible image server: the embedded default when no `GEMINI_API_KEY` is configured.

`local.gemini.server.LocalGemini` serves it in-process; `local.gemini.process` runs `python -m local.gemini` as a
supervised subprocess of the bot (importing it loads neither the server nor Pillow).
"""
