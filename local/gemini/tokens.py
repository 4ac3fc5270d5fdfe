"""`countTokens` as the local Gemini answers it: text by its length, images by their size, as Google documents.

- Text: "a token is equivalent to about 4 characters" (https://ai.google.dev/gemini-api/docs/tokens); each text
  part counts ceil(characters / 4), at least 1.
- Images, Gemini 2.x models (Peel's `gemini-2.5-flash-image`): "images with both dimensions <= 384 pixels are
  counted as 258 tokens. Images larger in one or both dimensions are cropped and scaled as needed into tiles of
  768x768 pixels, each counted as 258 tokens" (https://ai.google.dev/gemini-api/docs/tokens#multimodal-tokens);
  the tiles are read as ceil(width / 768) x ceil(height / 768).
- Images, Gemini 3 models: a fixed count per image set by the media resolution
  (https://ai.google.dev/gemini-api/docs/media-resolution), the catalogue's `input_image_tokens`.

The answer is the CountTokensResponse of https://ai.google.dev/api/tokens#response-body: `totalTokens` and
`promptTokensDetails` by modality.
"""

import io
import math
from typing import Any

from PIL import Image

from worker.catalogue import ModelSpec

CHARS_PER_TOKEN = 4
SMALL_IMAGE_PX = 384
TILE_PX = 768
TOKENS_PER_TILE = 258


def text_tokens(text: str) -> int:
    """Return the tokens of one text part."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def image_tokens(spec: ModelSpec, width: int, height: int) -> int:
    """Return the tokens of one input image of `width` x `height` pixels for the model."""
    if spec.input_image_tokens != TOKENS_PER_TILE:
        return spec.input_image_tokens
    if width <= SMALL_IMAGE_PX and height <= SMALL_IMAGE_PX:
        return TOKENS_PER_TILE
    return math.ceil(width / TILE_PX) * math.ceil(height / TILE_PX) * TOKENS_PER_TILE


def image_size(data: bytes) -> tuple[int, int]:
    """Return an image's pixel size.

    Raises:
        ValueError: the bytes are not an image PIL reads.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError("not an image") from exc


def count_response(spec: ModelSpec, texts: list[str], images: list[bytes]) -> dict[str, Any]:
    """Return the CountTokensResponse of a prompt of `texts` and `images`.

    Raises:
        ValueError: an image PIL cannot read.
    """
    text = sum(text_tokens(t) for t in texts)
    image = sum(image_tokens(spec, *image_size(data)) for data in images)
    details = [{"modality": "TEXT", "tokenCount": text}] if texts else []
    details += [{"modality": "IMAGE", "tokenCount": image}] if images else []
    return {"totalTokens": text + image, "promptTokensDetails": details}
