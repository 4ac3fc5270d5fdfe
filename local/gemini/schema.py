"""The request messages of the Gemini API and a checker that reads their JSON as Google's proto-JSON parser does.

Google's front end parses a request body into the API's protocol buffers before the model sees it, so a field the
message does not have, or a value of the wrong JSON type, is refused with 400 INVALID_ARGUMENT and a
`google.rpc.BadRequest` naming each bad field. The rules, each from its source:

- A field is named by its lowerCamelCase JSON name or its proto (snake_case) name; any other name is refused:
  `Invalid JSON payload received. Unknown name "foo" at 'generation_config': Cannot find field.`
  (https://protobuf.dev/programming-guides/json/: "the parser accepts both the lowerCamelCase name and the
  original proto field name"; the message as Google answers it, googleapis/python-genai#425).
- int32 fields take a JSON number with no fraction, or a string of one, inside the int32 range:
  `Invalid value at 'generation_config.seed' (TYPE_INT32), "abc"` (protobuf.dev JSON mapping, int32).
- float fields take a number, a numeric string, "NaN", "Infinity" or "-Infinity" (protobuf.dev, float/double).
- bool fields take true or false (protobuf.dev, bool).
- string fields take a JSON string; bytes fields a base64 string, standard or URL-safe, padded or not
  (protobuf.dev, string/bytes).
- enum fields take one of the value names listed in https://ai.google.dev/api/generate-content (protobuf.dev,
  enum); stricter than Google, the integer form is refused too (nothing Peel sends uses it):
  `Invalid value at '…' (type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.Modality), "X"`.
- A list for a field that is not repeated: `Invalid JSON payload received. Unknown name "seed" at
  'generation_config': Proto field is not repeating, cannot start list.`; an object for a scalar:
  `Invalid value at 'generation_config' (seed), Starting an object on a scalar field` (Google's parser, as its
  answers read).
- A repeated field takes a JSON array, a message field a JSON object; null for a field means "not set"
  (protobuf.dev, message/repeated/null).
- At most one member of a oneof is set: `Part.data` is one of text, inline_data, file_data, function_call…
  (protobuf.dev on oneofs; Part at https://ai.google.dev/api/caching#Part).

The messages and their fields are the Gemini API reference's (v1beta; v1 is a subset the checker does not tell
apart): GenerateContentRequest (https://ai.google.dev/api/generate-content#request-body), Content, Part, Blob,
FileData, VideoMetadata, FunctionCall, FunctionResponse, ExecutableCode, CodeExecutionResult
(https://ai.google.dev/api/caching#Content), GenerationConfig, ThinkingConfig, ImageConfig
(https://ai.google.dev/api/generate-content#generationconfig), SafetySetting
(https://ai.google.dev/api/generate-content#safetysetting) and CountTokensRequest
(https://ai.google.dev/api/tokens#request-body), Tool and ToolConfig with their messages
(https://ai.google.dev/api/caching#Tool). Where a subtree is a `google.protobuf.Struct` or `Value`
(FunctionCall.args, responseJsonSchema) any JSON is accepted, as the API does. The one looseness: a function
declaration's `parameters` and `response` (the recursive `Schema` message) are only checked to be objects; the
image models refuse function declarations anyway (`local.gemini.wire.tools_error`).
"""

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

TYPE_URL = "type.googleapis.com/google.ai.generativelanguage.{version}.{name}"
INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class Scalar:
    """A scalar proto type: string, bytes, bool, int32, float."""

    kind: str  # "TYPE_STRING", "TYPE_BYTES", "TYPE_BOOL", "TYPE_INT32", "TYPE_INT64", "TYPE_FLOAT"


@dataclass(frozen=True, slots=True)
class Enum:
    """A proto enum, by its full name under the API's package and its value names."""

    name: str
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class AnyJson:
    """`google.protobuf.Value` (any JSON) or, with `object_only`, `google.protobuf.Struct` (any JSON object)."""

    object_only: bool = False


@dataclass(frozen=True, slots=True)
class Repeated:
    """A repeated field of `item`."""

    item: "FieldType"


@dataclass(frozen=True, slots=True)
class Message:
    """A proto message: its name, its fields by proto (snake_case) name, and its oneof groups."""

    name: str
    fields: Mapping[str, "FieldType"] = field(hash=False)
    oneofs: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)


FieldType = Scalar | Enum | AnyJson | Repeated | Message

STRING, BYTES, BOOL = Scalar("TYPE_STRING"), Scalar("TYPE_BYTES"), Scalar("TYPE_BOOL")
INT32, INT64, FLOAT = Scalar("TYPE_INT32"), Scalar("TYPE_INT64"), Scalar("TYPE_FLOAT")
STRUCT, VALUE = AnyJson(object_only=True), AnyJson()

MODALITY = Enum("GenerationConfig.Modality", frozenset({"MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO"}))
MEDIA_RESOLUTION = Enum(
    "MediaResolution",
    frozenset(
        {"MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_HIGH"}
    ),
)
THINKING_LEVEL = Enum(
    "ThinkingConfig.ThinkingLevel", frozenset({"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"})
)
HARM_CATEGORY = Enum(
    "HarmCategory",
    frozenset(
        {
            "HARM_CATEGORY_UNSPECIFIED",
            "HARM_CATEGORY_DEROGATORY",
            "HARM_CATEGORY_TOXICITY",
            "HARM_CATEGORY_VIOLENCE",
            "HARM_CATEGORY_SEXUAL",
            "HARM_CATEGORY_MEDICAL",
            "HARM_CATEGORY_DANGEROUS",
            "HARM_CATEGORY_HARASSMENT",
            "HARM_CATEGORY_HATE_SPEECH",
            "HARM_CATEGORY_SEXUALLY_EXPLICIT",
            "HARM_CATEGORY_DANGEROUS_CONTENT",
            "HARM_CATEGORY_CIVIC_INTEGRITY",
        }
    ),
)
HARM_BLOCK_THRESHOLD = Enum(
    "SafetySetting.HarmBlockThreshold",
    frozenset(
        {
            "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
            "BLOCK_LOW_AND_ABOVE",
            "BLOCK_MEDIUM_AND_ABOVE",
            "BLOCK_ONLY_HIGH",
            "BLOCK_NONE",
            "OFF",
        }
    ),
)

BLOB = Message("Blob", {"mime_type": STRING, "data": BYTES})
FILE_DATA = Message("FileData", {"mime_type": STRING, "file_uri": STRING})
VIDEO_METADATA = Message("VideoMetadata", {"start_offset": STRING, "end_offset": STRING, "fps": FLOAT})
FUNCTION_CALL = Message("FunctionCall", {"id": STRING, "name": STRING, "args": STRUCT})
FUNCTION_RESPONSE = Message(
    "FunctionResponse",
    {
        "id": STRING,
        "name": STRING,
        "response": STRUCT,
        "parts": Repeated(STRUCT),
        "will_continue": BOOL,
        "scheduling": Enum(
            "FunctionResponse.Scheduling", frozenset({"SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"})
        ),
    },
)
EXECUTABLE_CODE = Message(
    "ExecutableCode",
    {"language": Enum("ExecutableCode.Language", frozenset({"LANGUAGE_UNSPECIFIED", "PYTHON"})), "code": STRING},
)
CODE_EXECUTION_RESULT = Message(
    "CodeExecutionResult",
    {
        "outcome": Enum(
            "CodeExecutionResult.Outcome",
            frozenset({"OUTCOME_UNSPECIFIED", "OUTCOME_OK", "OUTCOME_FAILED", "OUTCOME_DEADLINE_EXCEEDED"}),
        ),
        "output": STRING,
    },
)
PART_DATA = (
    "text",
    "inline_data",
    "function_call",
    "function_response",
    "file_data",
    "executable_code",
    "code_execution_result",
)
PART = Message(
    "Part",
    {
        "text": STRING,
        "inline_data": BLOB,
        "function_call": FUNCTION_CALL,
        "function_response": FUNCTION_RESPONSE,
        "file_data": FILE_DATA,
        "executable_code": EXECUTABLE_CODE,
        "code_execution_result": CODE_EXECUTION_RESULT,
        "video_metadata": VIDEO_METADATA,
        "thought": BOOL,
        "thought_signature": BYTES,
        "part_metadata": STRUCT,
        "media_resolution": Message("Part.MediaResolution", {"level": MEDIA_RESOLUTION}),
    },
    oneofs={"data": PART_DATA},
)
CONTENT = Message("Content", {"parts": Repeated(PART), "role": STRING})
THINKING_CONFIG = Message(
    "ThinkingConfig", {"include_thoughts": BOOL, "thinking_budget": INT32, "thinking_level": THINKING_LEVEL}
)
IMAGE_CONFIG = Message("ImageConfig", {"aspect_ratio": STRING, "image_size": STRING})
GENERATION_CONFIG = Message(
    "GenerationConfig",
    {
        "stop_sequences": Repeated(STRING),
        "response_mime_type": STRING,
        "response_schema": STRUCT,
        "response_json_schema": VALUE,
        "response_modalities": Repeated(MODALITY),
        "candidate_count": INT32,
        "max_output_tokens": INT32,
        "temperature": FLOAT,
        "top_p": FLOAT,
        "top_k": INT32,
        "seed": INT32,
        "presence_penalty": FLOAT,
        "frequency_penalty": FLOAT,
        "response_logprobs": BOOL,
        "logprobs": INT32,
        "enable_enhanced_civic_answers": BOOL,
        "speech_config": STRUCT,
        "thinking_config": THINKING_CONFIG,
        "image_config": IMAGE_CONFIG,
        "media_resolution": MEDIA_RESOLUTION,
    },
)
SAFETY_SETTING = Message("SafetySetting", {"category": HARM_CATEGORY, "threshold": HARM_BLOCK_THRESHOLD})
# Tool and ToolConfig (https://ai.google.dev/api/caching#Tool, #ToolConfig). A function declaration's `parameters`
# and `response` are the API's recursive `Schema` message, read here as any JSON object (the image models refuse
# function declarations whatever they hold: `wire.tools_error`).
FUNCTION_DECLARATION = Message(
    "FunctionDeclaration",
    {
        "name": STRING,
        "description": STRING,
        "behavior": Enum("FunctionDeclaration.Behavior", frozenset({"UNSPECIFIED", "BLOCKING", "NON_BLOCKING"})),
        "parameters": STRUCT,
        "parameters_json_schema": VALUE,
        "response": STRUCT,
        "response_json_schema": VALUE,
    },
)
GOOGLE_SEARCH_RETRIEVAL = Message(
    "GoogleSearchRetrieval",
    {
        "dynamic_retrieval_config": Message(
            "DynamicRetrievalConfig",
            {
                "mode": Enum("DynamicRetrievalConfig.Mode", frozenset({"MODE_UNSPECIFIED", "MODE_DYNAMIC"})),
                "dynamic_threshold": FLOAT,
            },
        )
    },
)
GOOGLE_SEARCH = Message(
    "Tool.GoogleSearch", {"time_range_filter": Message("Interval", {"start_time": STRING, "end_time": STRING})}
)
COMPUTER_USE = Message(
    "Tool.ComputerUse",
    {
        "environment": Enum(
            "Tool.ComputerUse.Environment", frozenset({"ENVIRONMENT_UNSPECIFIED", "ENVIRONMENT_BROWSER"})
        ),
        "excluded_predefined_functions": Repeated(STRING),
    },
)
FILE_SEARCH = Message(
    "FileSearch", {"file_search_store_names": Repeated(STRING), "metadata_filter": STRING, "top_k": INT32}
)
TOOL = Message(
    "Tool",
    {
        "function_declarations": Repeated(FUNCTION_DECLARATION),
        "google_search_retrieval": GOOGLE_SEARCH_RETRIEVAL,
        "code_execution": Message("CodeExecution", {}),
        "google_search": GOOGLE_SEARCH,
        "computer_use": COMPUTER_USE,
        "url_context": Message("UrlContext", {}),
        "file_search": FILE_SEARCH,
        "google_maps": Message("GoogleMaps", {"enable_widget": BOOL}),
    },
)
TOOL_CONFIG = Message(
    "ToolConfig",
    {
        "function_calling_config": Message(
            "FunctionCallingConfig",
            {
                "mode": Enum(
                    "FunctionCallingConfig.Mode", frozenset({"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"})
                ),
                "allowed_function_names": Repeated(STRING),
            },
        ),
        "retrieval_config": Message(
            "RetrievalConfig",
            {"lat_lng": Message("LatLng", {"latitude": FLOAT, "longitude": FLOAT}), "language_code": STRING},
        ),
    },
)
GENERATE_CONTENT_REQUEST = Message(
    "GenerateContentRequest",
    {
        "model": STRING,
        "contents": Repeated(CONTENT),
        "tools": Repeated(TOOL),
        "tool_config": TOOL_CONFIG,
        "safety_settings": Repeated(SAFETY_SETTING),
        "system_instruction": CONTENT,
        "generation_config": GENERATION_CONFIG,
        "cached_content": STRING,
    },
)
# The Batch API (https://ai.google.dev/api/batch-mode): `models.batchGenerateContent`'s body is
# `{"batch": GenerateContentBatch}`; its output-only fields are known (so accepted) and ignored, as Google's parser
# reads a message whole. `InputConfig.source` is a oneof of `file_name` and `requests`.
INLINED_REQUEST = Message("InlinedRequest", {"request": GENERATE_CONTENT_REQUEST, "metadata": STRUCT})
INPUT_CONFIG = Message(
    "InputConfig",
    {"file_name": STRING, "requests": Message("InlinedRequests", {"requests": Repeated(INLINED_REQUEST)})},
    oneofs={"source": ("file_name", "requests")},
)
GENERATE_CONTENT_BATCH = Message(
    "GenerateContentBatch",
    {
        "model": STRING,
        "name": STRING,
        "display_name": STRING,
        "input_config": INPUT_CONFIG,
        "output": STRUCT,
        "create_time": STRING,
        "end_time": STRING,
        "update_time": STRING,
        "batch_stats": STRUCT,
        "state": STRING,
        "priority": INT64,
        "webhook_config": STRUCT,
    },
)
BATCH_GENERATE_CONTENT_REQUEST = Message("BatchGenerateContentRequest", {"batch": GENERATE_CONTENT_BATCH})
# One line of a batch's input file: "a JSON object containing a user-defined key and a request object, where the
# request is a valid GenerateContentRequest" (https://ai.google.dev/gemini-api/docs/batch-api#input-file).
# Stricter than Google where its docs say nothing: no other field is taken.
BATCH_FILE_LINE = Message("BatchFileLine", {"key": STRING, "request": GENERATE_CONTENT_REQUEST})
COUNT_TOKENS_REQUEST = Message(
    "CountTokensRequest", {"contents": Repeated(CONTENT), "generate_content_request": GENERATE_CONTENT_REQUEST}
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One bad field: where (the proto path, "" at the root) and what Google says about it."""

    field: str
    description: str


def json_name(proto_name: str) -> str:
    """Return a proto field name's lowerCamelCase JSON name (protobuf.dev JSON mapping)."""
    head, *rest = proto_name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def check(message: Message, value: object, *, version: str = "v1beta") -> list[Violation]:
    """Return every violation in `value` read as `message` (an empty list when the parser would accept it)."""
    checker = _Checker(version)
    checker.message(message, value, "")
    return checker.violations


class _Checker:
    def __init__(self, version: str) -> None:
        self.version = "v1beta" if version == "v1alpha" else version
        self.violations: list[Violation] = []

    def type_url(self, name: str) -> str:
        return TYPE_URL.format(version=self.version, name=name)

    def invalid(self, path: str, type_name: str, value: object) -> None:
        shown = json.dumps(value, ensure_ascii=False)
        self.violations.append(Violation(path, f"Invalid value at '{path}' ({type_name}), {shown}"))

    def unknown(self, path: str, name: str, why: str) -> None:
        where = f" at '{path}'" if path else ""
        self.violations.append(Violation(path, f'Invalid JSON payload received. Unknown name "{name}"{where}: {why}'))

    def message(self, message: Message, value: object, path: str) -> None:
        if not isinstance(value, dict):
            self.invalid(path, self.type_url(message.name), value)
            return
        by_json = {json_name(name): name for name in message.fields}
        seen: dict[str, str] = {}
        for key, item in value.items():
            name = key if key in message.fields else by_json.get(key)
            if name is None:
                self.unknown(path, key, "Cannot find field.")
                continue
            if name in seen:
                self.unknown(path, key, f'Field "{name}" has already been set.')
                continue
            seen[name] = key
            if item is not None:
                self.field(message.fields[name], item, path, name, key)
        for oneof, group in message.oneofs.items():
            present = [seen[name] for name in group if name in seen and value[seen[name]] is not None]
            if len(present) > 1:
                self.unknown(path, present[1], f"Oneof field '{oneof}' is already set. Cannot set '{present[1]}'")

    def field(self, kind: FieldType, item: object, parent: str, name: str, key: str) -> None:
        path = f"{parent}.{name}" if parent else name
        if isinstance(kind, Repeated):
            if not isinstance(item, list):
                self.invalid(path, self.type_name(kind.item), item)
                return
            for i, element in enumerate(item):
                self.value(kind.item, element, f"{path}[{i}]", parent, name)
            return
        if isinstance(item, list) and not (isinstance(kind, AnyJson) and not kind.object_only):
            self.unknown(parent, key, "Proto field is not repeating, cannot start list.")
            return
        self.value(kind, item, path, parent, name)

    def type_name(self, kind: FieldType) -> str:
        if isinstance(kind, Scalar):
            return kind.kind
        if isinstance(kind, Enum | Message):
            return self.type_url(kind.name)
        return "google.protobuf.Value"

    def value(self, kind: FieldType, item: object, path: str, parent: str, name: str) -> None:
        if isinstance(kind, Message):
            self.message(kind, item, path)
        elif isinstance(kind, AnyJson):
            if kind.object_only and not isinstance(item, dict):
                self.invalid(path, "google.protobuf.Struct", item)
        elif isinstance(item, dict):
            self.violations.append(
                Violation(parent, f"Invalid value at '{parent}' ({name}), Starting an object on a scalar field")
            )
        elif isinstance(kind, Enum):
            if not (isinstance(item, str) and item in kind.values):
                self.invalid(path, self.type_url(kind.name), item)
        elif isinstance(kind, Scalar) and not _scalar_ok(kind.kind, item):
            self.invalid(path, kind.kind, item)


def _scalar_ok(kind: str, item: object) -> bool:
    if kind == "TYPE_STRING":
        return isinstance(item, str)
    if kind == "TYPE_BOOL":
        return isinstance(item, bool)
    if kind == "TYPE_BYTES":
        return isinstance(item, str) and _is_base64(item)
    if isinstance(item, bool) or not isinstance(item, int | float | str):
        return False
    if isinstance(item, str):
        if kind == "TYPE_FLOAT" and item in ("NaN", "Infinity", "-Infinity"):
            return True
        if not _NUMBER.fullmatch(item):
            return False
        number = float(item)
    else:
        number = float(item)
    if kind == "TYPE_FLOAT":
        return not math.isinf(number) or isinstance(item, str)
    low, high = INT64_RANGE if kind == "TYPE_INT64" else INT32_RANGE
    return number.is_integer() and low <= number <= high


def _is_base64(text: str) -> bool:
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            base64.urlsafe_b64decode(padded)
        else:
            base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True
