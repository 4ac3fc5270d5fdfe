"""What intake takes and tells: its limits, the reasons it skips an entry or refuses an upload, and its report.

`storage.intake` does the work; this module holds the values it reads and returns, and where an accepted image's
bytes live in the store (`content_key`).
"""

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.errors import StorageError
from storage.imageformat import ImageFormat

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

INPUTS_PREFIX = "inputs/"


def content_key(sha256: str, fmt: ImageFormat) -> str:
    """Return the content-addressed key of an image: `inputs/{sha256}.{ext}`."""
    return f"{INPUTS_PREFIX}{sha256}.{fmt.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeLimits:
    """Limits on what one upload may contain.

    Attributes:
        max_entries: entries in a ZIP's central directory other than its text files (images, folders, anything
            else); more refuses the whole ZIP.
        max_text_entries: the text files intake reads (the prompt table and `.txt` captions), counted apart from
            `max_entries` so that a caption beside each of 10,000 images, plus `prompts.csv`, never push a full batch
            over; more refuses the whole ZIP.
        max_total_uncompressed_bytes: the sum of the entries' uncompressed sizes; more refuses the whole ZIP.
        max_image_bytes: the size of one image file; a bigger entry or image is skipped.
        max_pixels: width x height of one image (decompression bombs), checked from the header before decoding.
        max_compression_ratio: uncompressed / compressed size of a ZIP entry. PNG, JPEG and WebP are already
            compressed, so deflate gains little on them (about 1.0-1.2x); a ratio in the hundreds means a run of
            repeated bytes (deflate tops out near 1032:1), i.e. a zip bomb or a useless uncompressed image.
        ratio_check_min_bytes: entries smaller than this are not ratio-checked: they cannot hurt, and tiny files
            (a flat-colour icon, say) have noisy ratios.
        max_upload_bytes: the compressed size of a ZIP streamed in; more stops the spooling and refuses it.
        max_central_directory_bytes_per_entry: bounds the central directory's size (zipfile parses all of it
            into memory) to what `max_entries` entries with long names could need.
        max_table_bytes: the size of the prompt table at the ZIP's root (`prompts.csv`, `prompts.jsonl`).
        max_caption_bytes: the size of one `.txt` caption.
        max_text_bytes_total: the text files of one ZIP together, so 10,000 captions stay bounded in memory.
    """

    max_entries: int = 10_000
    max_text_entries: int = 10_001
    max_total_uncompressed_bytes: int = 5 * GiB
    max_image_bytes: int = 50 * MiB
    max_pixels: int = 40_000_000
    max_compression_ratio: float = 100.0
    ratio_check_min_bytes: int = 1 * MiB
    max_upload_bytes: int = 6 * GiB
    max_central_directory_bytes_per_entry: int = 1 * KiB
    max_table_bytes: int = 16 * MiB
    max_caption_bytes: int = 64 * KiB
    max_text_bytes_total: int = 32 * MiB


_DEFAULT_LIMITS = IntakeLimits()


class IntakeSettings(BaseSettings):
    """Intake limits from the environment (`STORAGE_INTAKE_*`), read where the bot builds its services."""

    model_config = SettingsConfigDict(env_prefix="STORAGE_INTAKE_", extra="ignore")

    max_entries: int = Field(
        default=_DEFAULT_LIMITS.max_entries,
        ge=1,
        description="entries in a batch ZIP other than its text files; more refuses the whole ZIP",
    )
    max_text_entries: int = Field(
        default=_DEFAULT_LIMITS.max_text_entries,
        ge=0,
        description="text files in a batch ZIP (prompts.csv/.jsonl, .txt captions), counted apart from max_entries",
    )
    max_total_uncompressed_bytes: int = Field(
        default=_DEFAULT_LIMITS.max_total_uncompressed_bytes,
        ge=1,
        description="the sum of a batch ZIP's uncompressed sizes; more refuses the whole ZIP",
    )
    max_image_bytes: int = Field(
        default=_DEFAULT_LIMITS.max_image_bytes, ge=1, description="one image in a ZIP or attached; bigger is skipped"
    )
    max_pixels: int = Field(
        default=_DEFAULT_LIMITS.max_pixels,
        ge=1,
        description="width x height of one image (decompression bombs), read from its header before decoding",
    )
    max_compression_ratio: float = Field(
        default=_DEFAULT_LIMITS.max_compression_ratio,
        gt=1,
        description="uncompressed / compressed size of a ZIP entry above which it is skipped as a zip bomb",
    )
    ratio_check_min_bytes: int = Field(
        default=_DEFAULT_LIMITS.ratio_check_min_bytes,
        ge=0,
        description="entries smaller than this skip the ratio check",
    )
    max_upload_bytes: int = Field(
        default=_DEFAULT_LIMITS.max_upload_bytes, ge=1, description="the compressed size of a ZIP streamed in"
    )

    def limits(self) -> IntakeLimits:
        """Return these settings as an `IntakeLimits`."""
        return IntakeLimits(**self.model_dump())


class SkipReason(StrEnum):
    """Why one entry or image was not accepted (stored values are stable codes)."""

    UNSAFE_PATH = "unsafe_path"
    SYMLINK = "symlink"
    NOT_REGULAR_FILE = "not_regular_file"
    ENCRYPTED = "encrypted"
    UNSUPPORTED_COMPRESSION = "unsupported_compression"
    NESTED_ARCHIVE = "nested_archive"
    TOO_LARGE = "too_large"
    SUSPICIOUS_RATIO = "suspicious_ratio"
    CORRUPT_ENTRY = "corrupt_entry"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    TOO_MANY_PIXELS = "too_many_pixels"
    NOT_UTF8 = "not_utf8"


class RefusalReason(StrEnum):
    """Why a whole upload was refused."""

    NOT_A_ZIP = "not_a_zip"
    TOO_MANY_ENTRIES = "too_many_entries"
    TOO_MUCH_DATA = "too_much_data"
    UPLOAD_TOO_LARGE = "upload_too_large"


class IntakeError(StorageError):
    """Base of the intake errors."""


class IntakeRefusedError(IntakeError, ValueError):
    """The whole upload was refused; nothing from it was stored. `user_message` is safe to show the user."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.user_message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedImage:
    """An image that passed every check and is in the store under `key`.

    `duplicate_of` names the earlier entry of the same upload with the same content (stored once);
    `already_stored` says the store held the key before this upload (nothing was written).
    """

    name: str
    format: ImageFormat
    width: int
    height: int
    size_bytes: int
    sha256: str
    duplicate_of: str | None = None
    already_stored: bool = False

    @property
    def key(self) -> str:
        """The image's content-addressed key in the store (`content_key`).

        Made when asked rather than kept: a 10,000-image upload's report would hold 1.2 MB of keys that repeat
        the digests beside them.
        """
        return content_key(self.sha256, self.format)


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedEntry:
    """An entry or image that was not accepted, with a stable reason code and a message for humans."""

    name: str
    reason: SkipReason
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TextFile:
    """A text file of a ZIP handed back as it is (a prompt table or a caption); the bot reads it, storage does not."""

    name: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeReport:
    """The outcome of one upload: one line per entry in upload order, plus silent counts."""

    accepted: tuple[AcceptedImage, ...]
    skipped: tuple[SkippedEntry, ...]
    clutter_count: int = 0
    directory_count: int = 0
    texts: tuple[TextFile, ...] = ()  # the ZIP's prompt table and captions, in ZIP order

    @property
    def keys(self) -> tuple[str, ...]:
        """The distinct stored keys, in upload order."""
        return tuple(dict.fromkeys(image.key for image in self.accepted))

    def skip_counts(self) -> dict[SkipReason, int]:
        """Count the skipped entries by reason, most frequent first (for a one-line summary to the user)."""
        return dict(Counter(entry.reason for entry in self.skipped).most_common())

    def reasons(self) -> dict[str, SkipReason]:
        """Map each skipped entry's name to its reason (the last one wins for repeated names)."""
        return {entry.name: entry.reason for entry in self.skipped}


@dataclass(slots=True)
class ReportBuilder:
    """An upload's report while it is being taken in: entries are added in upload order, then `build` freezes it."""

    accepted: list[AcceptedImage] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    clutter_count: int = 0
    directory_count: int = 0
    first_name_by_sha: dict[str, str] = field(default_factory=dict)
    texts: list[TextFile] = field(default_factory=list)

    def skip(self, name: str, reason: SkipReason, message: str) -> SkippedEntry:
        """Add a skipped entry and return it."""
        entry = SkippedEntry(name=name, reason=reason, message=message)
        self.skipped.append(entry)
        return entry

    def build(self) -> IntakeReport:
        """Return the finished report."""
        return IntakeReport(
            accepted=tuple(self.accepted),
            skipped=tuple(self.skipped),
            clutter_count=self.clutter_count,
            directory_count=self.directory_count,
            texts=tuple(self.texts),
        )
