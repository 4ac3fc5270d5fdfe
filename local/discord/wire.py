"""The playground's HTTP plumbing: JSON responses as discord.py expects them, request bodies, and 429s."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

from aiohttp import BodyPartReader, web

from local.discord.rules import JSON, ApiError
from local.discord.state import Upload

_FILES_PART = re.compile(r"files\[(\d+)\]")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Return JSON with ``Content-Type`` exactly ``application/json``, which discord.py compares for equality."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def no_content() -> web.Response:
    """Return an empty 204 response."""
    return web.Response(status=204)


async def read_json_list(request: web.Request) -> list[JSON]:
    """Read a JSON array body (command bulk overwrites), or raise Discord's 50035."""
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from exc
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        error = {"code": "LIST_TYPE_CONVERT", "message": "Must be an array of objects."}
        raise ApiError(400, 50035, "Invalid Form Body", {"_errors": [error]})
    return body


async def read_body(request: web.Request, limit: int) -> tuple[JSON, dict[int, Upload]]:
    """Read a JSON or multipart (``payload_json`` + ``files[n]``) body, enforcing the upload size limit.

    Raises:
        ApiError: 413/40005 when the files exceed ``limit``; 400/50109 for a body that is not JSON.
    """
    files: dict[int, Upload] = {}
    payload: JSON = {}
    try:
        if request.content_type.startswith("multipart/"):
            total = 0
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                    if not isinstance(payload, dict):
                        raise ApiError(400, 50109, "The request body contains invalid JSON.")
                    continue
                chunks: list[bytes] = []
                while chunk := await part.read_chunk():
                    total += len(chunk)
                    if total <= limit:  # keep draining past the limit, so the 413 reaches the client
                        chunks.append(chunk)
                match = _FILES_PART.fullmatch(part.name or "")
                index = int(match.group(1)) if match else len(files)
                files[index] = Upload(
                    part.filename or f"file{index}", b"".join(chunks), part.headers.get("Content-Type")
                )
            if total > limit:
                raise ApiError(413, 40005, "Request entity too large")
        elif request.body_exists:
            raw = await request.read()
            payload = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, 50109, "The request body contains invalid JSON.") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, 50109, "The request body contains invalid JSON.")
    return payload, files


class RateLimitedError(Exception):
    """A request over its rate limit; becomes Discord's 429 response."""

    def __init__(self, body: JSON, headers: dict[str, str]) -> None:
        super().__init__("rate limited")
        self.body = body
        self.headers = headers

    def response(self) -> web.Response:
        """Return the 429 response."""
        return json_response(self.body, 429, self.headers)
