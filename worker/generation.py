"""The `ImageGenerator` and `ModelChecker` ports the handler calls, and the values they trade in (pure: no I/O)."""

from dataclasses import dataclass, field
from typing import Protocol

from worker.contract import ModelCheck


@dataclass(frozen=True, slots=True, kw_only=True)
class InputImage:
    """An image sent to the model: its bytes and their real MIME type (sniffed, not trusted from a name)."""

    data: bytes
    mime_type: str


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


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedImage:
    """What the model made: the final (non-draft) image, its sniffed MIME type, and any text it sent along."""

    data: bytes
    mime_type: str
    note: str | None = None
    attempts: int = 1


class ImageGenerator(Protocol):
    """Makes one image, retrying transient upstream failures itself.

    Raises `worker.errors.GenerationError` with the contract's code when the image cannot be made.
    """

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        """Generate the image `request` asks for."""
        ...


class ModelChecker(Protocol):
    """Tells whether the worker's Gemini key may use a model (the self-test job asks it)."""

    async def check_model(self, model: str) -> ModelCheck:
        """Look `model` up with the worker's key; never raises for an answer Gemini gives."""
        ...
