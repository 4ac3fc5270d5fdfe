"""The `ImageGenerator` and `ModelChecker` ports the handler calls, and the values they trade in (pure: no I/O)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from worker.contract import ModelCheck, RegionSpec, TokenUsage


@dataclass(frozen=True, slots=True, kw_only=True)
class InputImage:
    """An image sent to the model: its bytes and their real MIME type (sniffed, not trusted from a name).

    An image uploaded through the Files API (a relax part's shared reference) is named by `file_uri` instead of
    being inlined; its `data` may then be left empty, with `file_bytes` its size.
    """

    data: bytes
    mime_type: str
    file_uri: str | None = None
    file_bytes: int = 0

    @property
    def inline_bytes(self) -> int:
        """Return the image's size in bytes, as it would weigh inlined in a request."""
        return self.file_bytes if self.file_uri is not None else len(self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationRequest:
    """One image to generate.

    `references` shape the result; for a conversational edit `edit_source` is the image being edited and `history`
    the earlier instructions of its chain, oldest first, with `prompt` the new one.
    """

    model: str
    prompt: str
    references: tuple[InputImage, ...] = ()
    aspect_ratio: str | None = None
    image_size: str | None = None
    seed: int | None = None
    edit_source: InputImage | None = None
    history: tuple[str, ...] = field(default_factory=tuple)
    # Vary (Region): the part of `edit_source` to change; `references[0]` is then the source with it outlined
    region: RegionSpec | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedImage:
    """What the model made: the final (non-draft) image, its sniffed MIME type, and any text it sent along.

    `usage` is what Gemini reported billing for it, over all the attempts that got an answer.
    """

    data: bytes
    mime_type: str
    note: str | None = None
    attempts: int = 1
    usage: TokenUsage | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadedFile:
    """A file uploaded through Gemini's Files API: its resource name (`files/…`) and the URI requests name it by."""

    name: str
    uri: str


ChunkSink = Callable[[bytes], Awaitable[None]]
"""Takes the next chunk of a download; the next is read only once it returns."""


class GeminiFiles(Protocol):
    """Gemini's Files API as relax mode uses it: the heavy bytes of a batch (its input file, its results)."""

    async def upload_file(self, path: Path, *, mime_type: str, display_name: str) -> UploadedFile:
        """Upload the file at `path`; raises `GenerationError` with the contract's code when it fails."""
        ...

    async def download_file(self, name: str, sink: ChunkSink) -> None:
        """Stream the generated file `name` into `sink`; raises `GenerationError` when the download fails."""
        ...

    async def delete_file(self, name: str) -> None:
        """Delete the file `name`, best effort."""
        ...


class ImageGenerator(Protocol):
    """Makes one image, retrying transient upstream failures itself.

    Raises `worker.errors.GenerationError` with the contract's code when the image cannot be made.
    """

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Generate the image `request` asks for."""
        ...


class TextCaller(Protocol):
    """Makes one generateContent call of any model, once (the describe job kind asks a text model with it)."""

    async def call_model(self, model: str, contents: Any, config: Any) -> Any:
        """Return google-genai's `GenerateContentResponse`; raises `GenerationError` with the contract's code."""
        ...


class ModelChecker(Protocol):
    """Tells whether the worker's Gemini key may use a model (the self-test job asks it)."""

    async def check_model(self, model: str) -> ModelCheck:
        """Look `model` up with the worker's key; never raises for an answer Gemini gives."""
        ...
