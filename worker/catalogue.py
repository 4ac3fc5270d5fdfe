"""The catalogue of Gemini image models Peel knows: names, limits, sizes and prices (pure: no SDK, no I/O).

This is the one source of these facts; `worker.contract` re-exports it, and the bot reads it only from there.
Figures come from Google's model cards and pricing page: the reference-image limit, the aspect ratios, whether
`imageConfig.imageSize` is accepted, the pixel size of each aspect ratio at 1K, the price of one output image by
size (standard tier; the Batch API charges half) and the token counts the API reports. `worker.gemini` checks a
request against this table before calling Google, the local Gemini stand-in (`local.gemini`) validates and
sizes its answers with the same table, and the bot parses `--model`, `--ar`, `--size` and `--seed` and prices a
batch with it.

A model name that is not in the table (a newer model) gets permissive defaults: nothing is refused before the
call, and Google's own answer decides.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, get_args

# The ten aspect ratios every model takes (2.5 Flash Image and 3 Pro Image); 3.1 Flash Image adds the extreme ones.
ASPECT_RATIOS_10: tuple[str, ...] = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
EXTREME_ASPECT_RATIOS: tuple[str, ...] = ("1:4", "4:1", "1:8", "8:1")
ASPECT_RATIOS_14: tuple[str, ...] = (*ASPECT_RATIOS_10, *EXTREME_ASPECT_RATIOS)
ImageSize = Literal["512", "1K", "2K", "4K"]
IMAGE_SIZES: tuple[ImageSize, ...] = get_args(ImageSize)
# Gemini's seed is an INT32 (`generationConfig.seed`); Peel uses its non-negative half.
MAX_SEED = 2**31 - 1
SIZE_SCALE: Mapping[str, float] = {"512": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}
DEFAULT_IMAGE_SIZE = "1K"
# The largest generateContent request body Gemini takes, inline (base64) images included: "the total request size
# limit is 20 MB" (https://ai.google.dev/gemini-api/docs/image-understanding, "Passing images inline"); Google's
# front end counts it in bytes of 2^20 and refuses more with 400 INVALID_ARGUMENT "Request payload size exceeds the
# limit: N bytes." (observed for Gemini's earlier 4 MB limit in google-gemini/deprecated-generative-ai-android#26,
# and with this very number in https://cloud.google.com/dataflow/docs/guides/common-errors).
MAX_REQUEST_BYTES = 20 * 1024 * 1024

# Documented 1K pixel sizes of gemini-2.5-flash-image.
PIXELS_25: Mapping[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
# Gemini-3 models answer in ~1 MP buckets that differ slightly from 2.5's; 2K and 4K are these times 2 and 4.
PIXELS_3: Mapping[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
    "1:4": (512, 2048),
    "4:1": (2048, 512),
    "1:8": (384, 3072),
    "8:1": (3072, 384),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPrices:
    """A model's standard-tier prices in USD per million tokens (https://ai.google.dev/gemini-api/docs/pricing).

    Input is text and images alike; output is priced by what was made: text and thinking at one rate, images at
    another (an image's price per size is its output tokens at `image_output`). The Batch API charges half of each.
    """

    input: float
    text_output: float
    image_output: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One model's limits, sizes and prices.

    `aspect_ratios` and `image_sizes` are None when unknown (not checked); an empty `image_sizes` means the
    model refuses `imageSize` altogether (it makes 1K images only).
    """

    name: str
    max_input_images: int
    aspect_ratios: tuple[str, ...] | None
    image_sizes: tuple[str, ...] | None
    pixels_1k: Mapping[str, tuple[int, int]]
    price_usd: Mapping[str, float]
    output_tokens: Mapping[str, int]
    input_image_tokens: int
    thinking: bool
    output_mime: str
    token_prices: TokenPrices | None = None  # None: not priced (a model the table does not know)
    known: bool = True

    @property
    def takes_image_size(self) -> bool:
        """Tell whether `imageConfig.imageSize` may be sent to this model."""
        return self.image_sizes is None or bool(self.image_sizes)

    def pixel_size(self, aspect_ratio: str | None, image_size: str | None) -> tuple[int, int]:
        """Return the (width, height) the model answers with for this aspect ratio and image size."""
        ratio = aspect_ratio or "1:1"
        base = self.pixels_1k.get(ratio) or _pixels_for_ratio(ratio)
        scale = SIZE_SCALE.get(image_size or DEFAULT_IMAGE_SIZE, 1.0)
        return round(base[0] * scale), round(base[1] * scale)

    def price(self, image_size: str | None = None, *, batch: bool = False) -> float | None:
        """Return the price in USD of one output image of `image_size`, or None when unknown."""
        price = self.price_usd.get(image_size or DEFAULT_IMAGE_SIZE)
        if price is None:
            return None
        return price / 2 if batch else price

    def check(
        self, *, references: int, aspect_ratio: str | None, image_size: str | None, edit: bool = False
    ) -> str | None:
        """Return why the model would refuse this request, or None when it is acceptable.

        Args:
            references: how many reference images go with the prompt.
            aspect_ratio: the requested aspect ratio, if any.
            image_size: the requested image size, if any; the default size is accepted by every model (it is
                then simply not sent to a model that takes no `imageSize`).
            edit: whether the image being edited is sent as one more input image.
        """
        images = references + (1 if edit else 0)
        if images > self.max_input_images:
            detail = f"; {images} given ({references} references + the image being edited)" if edit else ""
            return f"{self.name} takes at most {self.max_input_images} reference images" + (
                detail or f"; {references} given"
            )
        if aspect_ratio is not None and self.aspect_ratios is not None and aspect_ratio not in self.aspect_ratios:
            return f"{self.name} does not take aspect ratio {aspect_ratio}; it takes {', '.join(self.aspect_ratios)}"
        if image_size is not None and self.image_sizes is not None:
            if not self.image_sizes and image_size != DEFAULT_IMAGE_SIZE:
                return f"{self.name} makes {DEFAULT_IMAGE_SIZE} images only; {image_size} asked"
            if self.image_sizes and image_size not in self.image_sizes:
                return f"{self.name} does not take image size {image_size}; it takes {', '.join(self.image_sizes)}"
        return None


def _pixels_for_ratio(ratio: str) -> tuple[int, int]:
    """About one megapixel in the shape of `ratio` ("W:H"), sides multiples of 16; 1024² when unparsable."""
    w_s, _, h_s = ratio.partition(":")
    try:
        w, h = float(w_s), float(h_s)
    except ValueError:
        return 1024, 1024
    if w <= 0 or h <= 0:
        return 1024, 1024
    side = 1024 * math.sqrt(w / h)
    return max(16, round(side / 16) * 16), max(16, round(1024 * 1024 / side / 16) * 16)


MODELS: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="gemini-2.5-flash-image",
            max_input_images=3,
            aspect_ratios=ASPECT_RATIOS_10,
            image_sizes=(),
            pixels_1k=PIXELS_25,
            price_usd={"1K": 0.039},
            output_tokens={"1K": 1290},
            input_image_tokens=258,
            thinking=False,
            output_mime="image/png",
            # $0.30 input (text/image), $30 per 1M image tokens: $0.039 an image of 1290. The page names no text
            # output price for this model; Gemini 2.5 Flash's $2.50 is used for the little text it may send.
            token_prices=TokenPrices(input=0.30, text_output=2.50, image_output=30.0),
        ),
        ModelSpec(
            name="gemini-3-pro-image",
            max_input_images=14,
            aspect_ratios=ASPECT_RATIOS_10,
            image_sizes=("1K", "2K", "4K"),
            pixels_1k=PIXELS_3,
            price_usd={"1K": 0.134, "2K": 0.134, "4K": 0.24},
            output_tokens={"1K": 1120, "2K": 1120, "4K": 2000},
            input_image_tokens=560,
            thinking=True,
            output_mime="image/jpeg",
            # $2 input (text/image), $12 text and thinking, $120 per 1M image tokens: $0.134 (1120), $0.24 (2000).
            token_prices=TokenPrices(input=2.0, text_output=12.0, image_output=120.0),
        ),
        ModelSpec(
            name="gemini-3.1-flash-image",
            max_input_images=14,
            aspect_ratios=ASPECT_RATIOS_14,
            image_sizes=IMAGE_SIZES,
            pixels_1k=PIXELS_3,
            price_usd={"512": 0.045, "1K": 0.067, "2K": 0.101, "4K": 0.151},
            output_tokens={"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
            input_image_tokens=1120,
            thinking=True,
            output_mime="image/jpeg",
            # $0.50 input (text/image), $3 text and thinking, $60 per 1M image tokens: $0.067 a 1K image (1120).
            token_prices=TokenPrices(input=0.50, text_output=3.0, image_output=60.0),
        ),
    )
}
# Text models Peel calls besides the image models: `/describe` reads an image with one (`GEMINI_DESCRIBE_MODEL`).
# Standard-tier prices per 1M tokens from https://ai.google.dev/gemini-api/docs/pricing: Gemini 2.5 Flash $0.30
# input (text, image, video), $2.50 output "including thinking tokens"; 2.5 Flash-Lite $0.10 and $0.40; 2.5 Pro
# $1.25 and $10 (prompts up to 200k tokens). A text model makes no image, so `image_output` is its output price:
# output Gemini did not break down by modality is then priced as the text it is.
TEXT_MODEL_PRICES: Mapping[str, TokenPrices] = {
    "gemini-2.5-flash": TokenPrices(input=0.30, text_output=2.50, image_output=2.50),
    "gemini-2.5-flash-lite": TokenPrices(input=0.10, text_output=0.40, image_output=0.40),
    "gemini-2.5-pro": TokenPrices(input=1.25, text_output=10.0, image_output=10.0),
}

# About 600 tokens in (an image of up to ~258 per tile, the instruction) and up to ~1,500 out with thinking, at
# Gemini 2.5 Flash's prices: $0.004 (rounded up). Only the estimate; what is recorded is the usage Gemini reports.
TEXT_ANSWER_ESTIMATE_USD = 0.004


def is_text_model(name: str) -> bool:
    """Tell whether `name` (a bare id or "models/<id>") is a text model of the price table (not an image model)."""
    return name.removeprefix("models/") in TEXT_MODEL_PRICES


# Older and preview API names of the same models.
PREVIEW_ALIASES: Mapping[str, str] = {
    "gemini-2.5-flash-image-preview": "gemini-2.5-flash-image",
    "gemini-3-pro-image-preview": "gemini-3-pro-image",
    "gemini-3.1-flash-image-preview": "gemini-3.1-flash-image",
}

# The short names users type after `--model` (and the settings menu offers), for the model ids Peel sends.
MODEL_ALIASES: Mapping[str, str] = {
    "flash": "gemini-2.5-flash-image",
    "nano-banana": "gemini-2.5-flash-image",
    "pro": "gemini-3-pro-image-preview",
    "nano-banana-pro": "gemini-3-pro-image-preview",
    "flash3": "gemini-3.1-flash-image-preview",
    "nano-banana-2": "gemini-3.1-flash-image-preview",
}


def model_spec(name: str) -> ModelSpec:
    """Return the spec of model `name` (a bare id or "models/<id>"); unknown names get permissive defaults.

    A name that extends a known one (a dated or preview variant, e.g. "gemini-3-pro-image-preview-11-2025")
    takes the known model's limits under its own name.
    """
    bare = name.removeprefix("models/")
    known = MODELS.get(PREVIEW_ALIASES.get(bare, bare))
    if known is None:
        stems = [stem for stem in MODELS if bare.startswith(stem + "-")]
        if stems:
            known = MODELS[max(stems, key=len)]
    if known is not None:
        return known if known.name == bare else replace(known, name=bare)
    thinking = bare.startswith("gemini-3")
    return ModelSpec(
        name=bare,
        max_input_images=14,
        aspect_ratios=None,
        image_sizes=None,
        pixels_1k=PIXELS_3 if thinking else PIXELS_25,
        output_tokens={},
        input_image_tokens=560,
        thinking=thinking,
        output_mime="image/jpeg" if thinking else "image/png",
        # A text model's answer is priced by its tokens; its "image" price is the estimate of one describe answer
        # (an image and an instruction in, four prompts and thoughts out), what a plan or a budget hold counts.
        price_usd={DEFAULT_IMAGE_SIZE: TEXT_ANSWER_ESTIMATE_USD} if bare in TEXT_MODEL_PRICES else {},
        token_prices=TEXT_MODEL_PRICES.get(bare),  # a text model is priced; its image limits are no one's
        known=False,
    )
