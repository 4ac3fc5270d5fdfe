"""Gemini's REST JSON as the local server reads and answers it: validation, error bodies, base64, MIME sniffing.

Where each 400 INVALID_ARGUMENT message comes from. "Observed": Google's answer as clients quote it (searched in
public code and issues); "assumed": no quote of Google's was found, so the wording is this server's, in Google's
style and error JSON. A test asserting an assumed wording asserts this server, not Google.

| message | provenance |
|---|---|
| `* GenerateContentRequest.contents: contents is not specified` | observed (google.api_core `InvalidArgument: 400 …`) |
| `* GenerateContentRequest.contents[i].parts: contents.parts must not be empty.` | assumed, on the line above |
| `Unsupported MIME type: …` | assumed |
| `Inline image exceeds the maximum size of 7 MB.` | assumed (the 7 MB per inline file is documented) |
| `Unable to process input image. Please retry or report in …troubleshooting` | observed (an image Gemini cannot read) |
| `Too many images in the request: …`, `Unsupported aspect ratio: …` | assumed |
| `Unsupported image size: …`, `imageSize is not supported by …` | assumed |
| `Developer instruction is not enabled for models/…` | observed (gemma models) |
| `Function calling is not enabled for models/…` | observed (an image model; `tools_error`) |
| `Multiple candidates…`, other tools' `… is not enabled for models/…` | assumed, on the pattern above |
| `The requested combination of response modalities …` | observed (`modalities_error`) |
| `Request payload size exceeds the limit: 20971520 bytes.` | observed (`worker.catalogue.MAX_REQUEST_BYTES`) |
"""

import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from local.gemini.schema import Violation
from storage.imageformat import sniff_image
from worker.catalogue import IMAGE_SIZES, ModelSpec

API_VERSIONS = frozenset({"v1", "v1beta", "v1alpha"})
INPUT_MIME = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
MAX_INLINE_IMAGE_BYTES = 7 * 1024 * 1024
ACCEPTED_MODALITY_LIST = (("IMAGE",), ("TEXT", "IMAGE"))
ACCEPTED_MODALITIES = [set(combo) for combo in ACCEPTED_MODALITY_LIST]

JsonObject = dict[str, Any]


def error_body(code: int, status: str, message: str, details: list[JsonObject] | None = None) -> JsonObject:
    """Return Google's error JSON (`google.rpc.Status` under "error")."""
    error: JsonObject = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def error_response(code: int, status: str, message: str, details: list[JsonObject] | None = None) -> web.Response:
    """Return Google's error JSON as an HTTP response with that status."""
    return web.json_response(error_body(code, status, message, details), status=code)


def invalid_argument(message: str) -> web.Response:
    """Return a 400 INVALID_ARGUMENT answer."""
    return error_response(400, "INVALID_ARGUMENT", message)


def bad_request(violations: list[Violation]) -> web.Response:
    """Return the 400 INVALID_ARGUMENT answer of a body Google's proto-JSON parser refuses.

    The messages are joined by newlines and each is a `google.rpc.BadRequest` field violation, whose `field` is
    left out at the root, as Google answers (e.g. googleapis/python-genai#425).
    """
    field_violations: list[JsonObject] = [
        ({"field": v.field} if v.field else {}) | {"description": v.description} for v in violations
    ]
    return error_response(
        400,
        "INVALID_ARGUMENT",
        "\n".join(v.description for v in violations),
        [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": field_violations}],
    )


def modalities_error(spec: ModelSpec, modalities: list[str]) -> web.Response | None:
    """Return the 400 for response modalities the image model cannot answer with, or None when it can.

    The image models answer IMAGE, or TEXT and IMAGE
    (https://ai.google.dev/gemini-api/docs/image-generation: "responseModalities: ['TEXT', 'IMAGE']" or
    "['IMAGE']"); anything else (AUDIO, TEXT alone) is refused as Google refuses a combination a model does not
    take (the message as seen from the API, e.g. BerriAI/litellm#11118). Stricter than Google on TEXT alone.
    """
    if not modalities or set(modalities) in ACCEPTED_MODALITIES:
        return None
    accepted = "".join(f"* {', '.join(combo)}\n" for combo in ACCEPTED_MODALITY_LIST)
    return invalid_argument(
        f"The requested combination of response modalities ({', '.join(modalities)}) is not supported by the "
        f"model. models/{spec.name} accepts the following combination of response modalities:\n{accepted}"
    )


# What each tool is called in the refusal of a model that does not take it. "Function calling is not enabled for
# models/…" is Google's wording, observed on an image model ("Function calling is not enabled for
# models/gemini-2.0-flash-preview-image-generation, Status: INVALID_ARGUMENT", as quoted in public clients' error
# handling); the others are assumed on the pattern of "… as tool is not enabled for models/…", observed for image
# search on a Gemini 3 model.
TOOL_REFUSALS: dict[str, str] = {
    "functionDeclarations": "Function calling",
    "googleSearchRetrieval": "Search as tool",
    "googleSearch": "Search as tool",
    "codeExecution": "Code execution",
    "computerUse": "Computer use as tool",
    "urlContext": "Url context as tool",
    "fileSearch": "File search as tool",
    "googleMaps": "Google Maps as tool",
}


def accepted_tools(spec: ModelSpec) -> frozenset[str]:
    """Return the tools an image model takes: Google Search grounding on the Gemini 3 image models, nothing else.

    The model pages list, for Gemini 3 Pro Image and 3.1 Flash Image, "Search grounding: Supported" and function
    calling, code execution, URL context and file search "Not supported"; Gemini 2.5 Flash Image supports none
    of them (https://ai.google.dev/gemini-api/docs/models, the "Capabilities" rows;
    https://ai.google.dev/gemini-api/docs/image-generation, "Grounding with Google Search"). Stricter than Google
    where a page says nothing (Maps, computer use, the legacy `googleSearchRetrieval`): refused.
    """
    return frozenset({"googleSearch"}) if spec.name.startswith("gemini-3") else frozenset()


def tools_error(spec: ModelSpec, tools: object) -> web.Response | None:
    """Return the 400 for a tool the image model does not take, or None when every tool is accepted."""
    if not isinstance(tools, list):
        return None
    accepted = accepted_tools(spec)
    for tool in tools:
        for name in tool if isinstance(tool, dict) else ():
            if tool[name] not in (None, []) and name not in accepted:  # null or [] is "not set" in proto JSON
                return invalid_argument(f"{TOOL_REFUSALS.get(name, name)} is not enabled for models/{spec.name}")
    return None


def b64decode_any(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (Google's proto-JSON parser accepts both alphabets).

    Raises:
        ValueError: not base64.
    """
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"Base64 decoding failed: {exc}") from exc


def _to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camelize(value: Any) -> Any:
    """Rename every snake_case key to lowerCamelCase, as Google's proto-JSON parser accepts both spellings.

    google-genai really sends a mix, e.g. `{"inlineData": {"data": …, "mime_type": "image/png"}}`.
    """
    if isinstance(value, dict):
        return {_to_camel(str(k)): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def sniff_mime(data: bytes) -> str | None:
    """Return the MIME type the bytes really are (PNG, JPEG, WebP, HEIC), or None."""
    fmt = sniff_image(data)
    if fmt is not None:
        return fmt.content_type
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypheif"):
        return "image/heic"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedRequest:
    """What a valid generateContent request asks for."""

    prompt: str
    texts: list[str]
    images: list[bytes]
    aspect_ratio: str | None
    image_size: str | None
    seed: int | None
    modalities: tuple[str, ...] | None
    include_thoughts: bool


def _valid_ratio(ratio: str) -> bool:
    w, sep, h = ratio.partition(":")
    return bool(sep) and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0


def parse_request(spec: ModelSpec, body: JsonObject) -> ParsedRequest | web.Response:
    """Validate a camelized generateContent body like Gemini does; return its parts or the 400 answer."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return invalid_argument("* GenerateContentRequest.contents: contents is not specified\n")
    texts: list[str] = []
    images: list[bytes] = []
    for ci, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            return invalid_argument(
                f"* GenerateContentRequest.contents[{ci}].parts: contents.parts must not be empty.\n"
            )
        user = content.get("role", "user") == "user"
        for pi, part in enumerate(parts):
            if not isinstance(part, dict):
                return invalid_argument(f"Invalid value at 'contents[{ci}].parts[{pi}]': not an object")
            if isinstance(part.get("text"), str) and user and not part.get("thought"):
                texts.append(part["text"])
            blob = part.get("inlineData")
            if blob is None:
                continue
            mime = blob.get("mimeType", "") if isinstance(blob, dict) else ""
            if mime not in INPUT_MIME:
                return invalid_argument(f"Unsupported MIME type: {mime}")
            try:
                raw = b64decode_any(str(blob.get("data", "")))
            except ValueError as exc:
                return invalid_argument(
                    f"Invalid value at 'contents[{ci}].parts[{pi}].inline_data.data' (TYPE_BYTES), {exc}"
                )
            if len(raw) > MAX_INLINE_IMAGE_BYTES:
                return invalid_argument("Inline image exceeds the maximum size of 7 MB.")
            sniffed = sniff_mime(raw)
            if sniffed is None:
                return invalid_argument(
                    "Unable to process input image. Please retry or report in "
                    "https://developers.generativeai.google/guide/troubleshooting"
                )
            if sniffed != mime and not (sniffed == "image/heic" and mime == "image/heif"):
                # Stricter than Google, which reads the bytes whatever the label; answered as an unreadable image.
                return invalid_argument(
                    "Unable to process input image. Please retry or report in "
                    "https://developers.generativeai.google/guide/troubleshooting"
                )
            if user:
                images.append(raw)
    if len(images) > spec.max_input_images:
        return invalid_argument(
            f"Too many images in the request: {len(images)} > {spec.max_input_images} for models/{spec.name}."
        )
    if (refused := tools_error(spec, body.get("tools"))) is not None:
        return refused
    if body.get("systemInstruction") and not spec.thinking:
        return invalid_argument(f"Developer instruction is not enabled for models/{spec.name}")
    config = body.get("generationConfig") or {}
    if not isinstance(config, dict):
        return invalid_argument("Invalid value at 'generation_config': not an object")
    image_config = config.get("imageConfig") or {}
    ratio = image_config.get("aspectRatio")
    allowed = spec.aspect_ratios
    if ratio is not None and (
        not isinstance(ratio, str) or (ratio not in allowed if allowed is not None else not _valid_ratio(ratio))
    ):
        supported = f" Supported: {', '.join(allowed)}" if allowed is not None else ""
        return invalid_argument(f"Unsupported aspect ratio: {ratio}.{supported}")
    size = image_config.get("imageSize")
    if size is not None:
        sizes = spec.image_sizes if spec.image_sizes is not None else IMAGE_SIZES
        if not sizes:
            return invalid_argument(f"imageSize is not supported by models/{spec.name}.")
        if size not in sizes:
            return invalid_argument(f"Unsupported image size: {size}. Supported: {', '.join(sizes)}")
    candidates = config.get("candidateCount")
    if isinstance(candidates, int) and candidates > 1:
        return invalid_argument(f"Multiple candidates is not enabled for models/{spec.name}")
    seed = config.get("seed")
    if seed is not None:
        seed = int(float(seed))  # an int32 in proto JSON may be 7, 7.0 or "7" (`schema.check` let it through)
    modalities = config.get("responseModalities")
    if isinstance(modalities, list) and (refused := modalities_error(spec, [str(m) for m in modalities])):
        return refused
    thinking = config.get("thinkingConfig") or {}
    return ParsedRequest(
        prompt="\n".join(texts),
        texts=texts,
        images=images,
        aspect_ratio=ratio,
        image_size=size,
        seed=seed,
        modalities=tuple(str(m).upper() for m in modalities) if isinstance(modalities, list) else None,
        include_thoughts=bool(thinking.get("includeThoughts")) if isinstance(thinking, dict) else False,
    )


def new_response_id() -> str:
    """Return a fresh `responseId` in Gemini's form (22 URL-safe base64 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
