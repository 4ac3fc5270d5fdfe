"""The local Gemini's text models (`worker.catalogue.TEXT_MODEL_PRICES`): an answer in words about the images sent.

Peel asks a text model one thing, to describe an image as prompts (`/describe`, `worker.describe`), with structured
output (https://ai.google.dev/gemini-api/docs/structured-output). The answer is deterministic from the images (their
average colour, size and shape) so tests can tell what was read, and shaped as Google's: one candidate whose text
part is the JSON the schema asks for (or prose without a schema), `finishReason` STOP and `usageMetadata` with the
answer's TEXT tokens. As strict as for the image models, plus what a text model refuses:

- `responseModalities` with IMAGE, and `imageConfig`: the text models answer TEXT only
  (https://ai.google.dev/gemini-api/docs/models, "Output: Text" for Gemini 2.5 Flash), refused with the wording of
  the image models' modality refusal (`wire.modalities_error`);
- `responseSchema` or `responseJsonSchema` without `responseMimeType` "application/json": "a response mime type
  must be set" (the structured-output page: the schema applies to a JSON response).
"""

import json
from io import BytesIO

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from local.gemini.answers import envelope, usage
from local.gemini.tokens import text_tokens
from local.gemini.wire import JsonObject, ParsedRequest, invalid_argument
from worker.catalogue import ModelSpec

_COLOURS = {
    "red": (200, 40, 40),
    "orange": (230, 140, 30),
    "yellow": (230, 210, 40),
    "green": (50, 160, 60),
    "teal": (30, 150, 150),
    "blue": (40, 80, 200),
    "purple": (130, 60, 170),
    "pink": (230, 120, 170),
    "brown": (120, 80, 40),
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
    "white": (240, 240, 240),
}
_STYLES = (
    "a photograph of",
    "a watercolour painting of",
    "a minimalist digital illustration of",
    "a cinematic still of",
    "an oil painting of",
)


def refusal(spec: ModelSpec, config: JsonObject) -> web.Response | None:
    """Return the 400 a text model answers for image output or a schema without a JSON response, else None."""
    modalities = config.get("responseModalities")
    if isinstance(modalities, list) and any(str(m).upper() != "TEXT" for m in modalities):
        return invalid_argument(
            f"The requested combination of response modalities ({', '.join(str(m) for m in modalities)}) is not "
            f"supported by the model. models/{spec.name} accepts the following combination of response "
            "modalities:\n* TEXT\n"
        )
    if config.get("imageConfig"):
        return invalid_argument(f"Image config is not supported by models/{spec.name}.")
    schema = config.get("responseSchema") or config.get("responseJsonSchema")
    if schema and config.get("responseMimeType") != "application/json":
        return invalid_argument("For response_schema, a response mime type must be set to 'application/json'.")
    return None


def colour_name(data: bytes) -> str:
    """Return the named colour nearest an image's average colour ("grey" when it can't be read)."""
    try:
        with Image.open(BytesIO(data)) as image:
            r, g, b = image.convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
    except (UnidentifiedImageError, OSError, ValueError):
        return "grey"
    return min(_COLOURS, key=lambda n: sum((a - c) ** 2 for a, c in zip(_COLOURS[n], (r, g, b), strict=True)))


def shape_of(data: bytes) -> tuple[str, int, int]:
    """Return an image's orientation word and size ("square", 0, 0 when it can't be read)."""
    try:
        with Image.open(BytesIO(data)) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError):
        return "square", 0, 0
    orientation = "wide" if width > height * 1.1 else "tall" if height > width * 1.1 else "square"
    return orientation, width, height


def descriptions(images: list[bytes], count: int) -> list[str]:
    """Return `count` distinct prompts describing the first image, deterministically."""
    data = images[0] if images else b""
    colour = colour_name(data)
    orientation, width, height = shape_of(data)
    subject = f"a {orientation} scene washed in {colour}"
    return [
        f"{_STYLES[i % len(_STYLES)]} {subject}, soft light, detailed, {width}x{height} frame, variant {i + 1}"
        for i in range(count)
    ]


def _array_property(schema: object) -> tuple[str, int] | None:
    """Return the name and `minItems` of the schema's first array property (None when it has none)."""
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties")
    for name, prop in (properties or {}).items() if isinstance(properties, dict) else ():
        if isinstance(prop, dict) and str(prop.get("type", "")).upper() == "ARRAY":
            low = prop.get("minItems", 1)
            return name, int(low) if isinstance(low, (int, str)) and str(low).isdigit() else 1
    return None


def text_body(spec: ModelSpec, parsed: ParsedRequest, config: JsonObject) -> JsonObject:
    """Return a text model's answer: the schema's JSON (an object with its array filled) or a prose description."""
    schema = config.get("responseSchema") or config.get("responseJsonSchema")
    target = _array_property(schema) if config.get("responseMimeType") == "application/json" else None
    if target is not None:
        name, count = target
        text = json.dumps({name: descriptions(parsed.images, max(1, count))})
    else:
        text = descriptions(parsed.images, 1)[0] + "."
    body = envelope(spec, usage(spec, parsed, images_out=0, text_tokens=text_tokens(text)))
    body["candidates"] = [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}]
    return body


__all__ = ["colour_name", "descriptions", "refusal", "shape_of", "text_body"]
