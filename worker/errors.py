"""Errors of the worker.

WorkerError                 base; `code` is a contract ErrorCode
├── GenerationError         one item failed (safety block, bad input, upstream, rate limit, no image)
└── InputError              the whole chunk's input is unusable (BAD_INPUT at top level)
"""

from worker.contract import ErrorCode, TokenUsage


class WorkerError(Exception):
    """Base of the worker's errors; `code` says which contract error it maps to."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        """Tell whether the same request can succeed later."""
        return self.code.is_retryable


class GenerationError(WorkerError):
    """One image could not be made; `retry_after_s` is the upstream's own retry hint, when it gave one.

    `usage` is what Gemini billed for the item's calls before it failed (None when no answer came).
    """

    def __init__(
        self, code: ErrorCode, message: str, *, retry_after_s: float | None = None, usage: TokenUsage | None = None
    ) -> None:
        super().__init__(code, message)
        self.retry_after_s = retry_after_s
        self.usage = usage


class InputError(WorkerError):
    """The chunk's input is unusable as a whole."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.BAD_INPUT, message)
