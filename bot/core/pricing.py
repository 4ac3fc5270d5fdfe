"""What an item really cost: Gemini's reported usage priced by the catalogue's token prices (pure).

Gemini bills tokens, not images (https://ai.google.dev/gemini-api/docs/pricing): the prompt's at the input price
(text and images alike), the answer's image at the image-output price and its text and thoughts at the text-output
price; the Batch API (relax mode) at half of each. `cost_of` applies this to the `TokenUsage` a worker reports for
an item, so the ledger records what Gemini charged, a blocked prompt's input included. The per-image prices of the
catalogue (`ModelSpec.price`) stay the estimate a plan shows before anything runs, and the fallback for a worker
older than usage reports.
"""

from worker.contract import TokenUsage, model_spec

PER_TOKENS = 1_000_000


def cost_of(
    model: str, usage: TokenUsage | None, *, batch: bool, image_size: str | None = None, made: bool = True
) -> float | None:
    """Return what Gemini charged in USD for an item's calls, or None when the price table cannot tell.

    Args:
        model: the model the item ran on (a catalogue name, an alias of one, or "models/<id>").
        usage: what the worker reported; None from a worker older than usage reports (or when no answer came).
        batch: whether the item went through Gemini's Batch API (relax mode), billed at half.
        image_size: the size asked, for the fallback price of an image made without usage.
        made: whether the item's image was made, for the fallback: with no usage a made image costs the
            catalogue's price of one image of its size, a failed item nothing.

    An answer's output tokens Gemini did not break down by modality are all priced as image output: the image is
    nearly all of an image model's answer, and a cost too high is safer for a budget than one too low.
    """
    spec = model_spec(model)
    if usage is None:
        return spec.price(image_size, batch=batch) if made else 0.0
    prices = spec.token_prices
    if prices is None:
        return None
    image_tokens = usage.output_tokens if usage.image_output_tokens is None else usage.image_output_tokens
    text_tokens = max(0, usage.output_tokens - image_tokens) + usage.thoughts_tokens
    cost = (
        usage.prompt_tokens * prices.input + image_tokens * prices.image_output + text_tokens * prices.text_output
    ) / PER_TOKENS
    return cost / 2 if batch else cost
