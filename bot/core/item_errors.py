"""What a user reads about an item that was not made: one fixed message per error code (pure).

The worker's message, and any RunPod error text, is the operator's detail: it can quote a foreign exception
(a host and port, an object's repr), so it stays in the ledger and the logs. The manifests, Discord and the CLI
show the code and the message this table gives for it, never that text.
"""

from collections.abc import Mapping

from worker.contract import ErrorCode

NOT_MADE = "NOT_MADE"  # the error code of an item that failed without one (or never ran)

# What a block or a failure cost. Gemini bills by token count, and only a request that fails with a 400 or 500 error
# is not charged (https://ai.google.dev/gemini-api/docs/billing, "Am I charged for failed requests?"): a blocked
# prompt is a 200 answer whose usageMetadata reports its input tokens, which the ledger records (`bot.core.pricing`),
# so no message says "nothing was charged" for it; an answer without an image is billed alike.
BLOCKED_COST = "Gemini still bills the prompt's input tokens when it blocks one (a fraction of a cent)."
NOT_MADE_COST = (
    "Images that were not made are not billed as images; Gemini bills the input tokens of any answer it gave."
)

ITEM_ERROR_MESSAGES: Mapping[str, str] = {
    ErrorCode.SAFETY.value: "Blocked by Gemini's safety filters.",
    ErrorCode.BAD_INPUT.value: "The request could not be made as asked.",
    ErrorCode.TOO_LARGE.value: "The images given are too large together for Gemini (20 MB at most); use fewer or "
    "smaller ones.",
    ErrorCode.RATE_LIMITED.value: "Gemini was too busy; try again later.",
    ErrorCode.UPSTREAM.value: "The image service failed; try again later.",
    ErrorCode.NO_IMAGE.value: "Gemini answered without an image.",
    ErrorCode.STORAGE.value: "The image could not be stored; try again later.",
    ErrorCode.CONFIG.value: "Peel's image service is misconfigured; the admins have been told.",
    ErrorCode.UNAVAILABLE.value: "The image service could not be reached; nothing was charged.",
    ErrorCode.EXPIRED.value: "Gemini's batch did not finish it in time; nothing was charged. Retry failed runs it "
    "again.",
    ErrorCode.STOPPED.value: "Stopped before it was made (the batch was paused or cancelled); nothing was charged.",
    NOT_MADE: "The image was not made.",
}


def item_error_message(code: str | None) -> str:
    """Return the user's message for an item that failed with `code` (a generic one for an unknown code)."""
    return ITEM_ERROR_MESSAGES.get(code or NOT_MADE, ITEM_ERROR_MESSAGES[NOT_MADE])
