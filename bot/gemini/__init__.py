"""The bot's side of Gemini: the cheap Batch API calls of relax mode (the worker does the heavy bytes)."""
