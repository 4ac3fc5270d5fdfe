"""A local Gemini-compatible image server: the embedded default when no `GEMINI_API_KEY` is configured.

It speaks the Gemini Developer API's REST JSON (`generativelanguage.googleapis.com`) closely enough for the
unmodified google-genai SDK, and it *draws* its answers: a deterministic picture of the prompt, seed and
reference images (a palette from a hash of the prompt and seed, shapes placed by the seed, the references
tinting the palette and shown as thumbnails along the bottom), in the exact pixel size the real model would use
for the requested aspect ratio and image size (`worker.catalogue`). Faults (latency, 429s, 5xx, safety blocks,
malformed or image-less answers) come from the environment or the admin endpoints.

Routes:

    POST /{v1|v1beta|v1alpha}/models/{model}:generateContent   the API (SDK 3.x defaults to v1, Peel pins v1beta)
    POST /{v1|v1beta|v1alpha}/models/{model}:countTokens    totalTokens and promptTokensDetails (`local.gemini.tokens`)
    GET  /{v1|v1beta|v1alpha}/models/{model}    models.get: the model's resource, 404 for a model the catalogue
                                                does not know (the worker's self-test looks its models up)
    GET  /{v1|v1beta|v1alpha}/models            models.list: the catalogue's models, `pageSize` (default 50, at
                                                most 1000) and `pageToken` / `nextPageToken`
    POST /upload/{version}/files                the Files API's resumable upload: `start`, then `upload[, finalize]`
    GET  /{version}/files                       files.list (`pageSize` default 10, at most 100; `pageToken`)
    GET  /{version}/files/{id}                  files.get: the File resource (403 when missing or expired)
    GET  /{version}/files/{id}:download?alt=media   a generated file's bytes (uploaded files are refused)
    DELETE /{version}/files/{id}                files.delete
                                                (all of it: `local.gemini.files`, its protocol and sources)
    POST /{version}/models/{model}:batchGenerateContent   batches.create: inlined requests or an input file;
                                                answers the batch's Operation (`name` "batches/{id}", `metadata`)
    GET  /{version}/batches/{id}                batches.get: the Operation (state, batchStats, output)
    GET  /{version}/batches                     batches.list: `operations`, `pageSize` (default 10, at most 100),
                                                `pageToken` / `nextPageToken`, newest first
    POST /{version}/batches/{id}:cancel         batches.cancel: `{}`; it stops and ends CANCELLED, no results
    DELETE /{version}/batches/{id}              batches.delete: `{}`; it stops and is no longer found
                                                (all of it: `local.gemini.batches`, its protocol and sources)
    GET  /stats                 {"requests", "in_flight", "max_in_flight", "errors_injected", "blocked",
                                 "images", "rejected", "unauthorized",           generateContent's (online) calls
                                 "batches_created", "batch_requests", "batch_images"}   the Batch API's, apart
    GET  /admin/faults          the current faults (the JSON below)
    POST /admin/faults          merge a JSON object of faults into the current ones; answers the result
    POST /admin/clock           {"advance_s": N}: move the Files API's clock on (files expire after 48 hours)
    POST /admin/reset           zero /stats, forget scripted faults, restore the faults the server started with
    GET  /admin/requests        the last requests received (model, prompt excerpt, images, options; no bytes),
                                batch requests too (`"batch": true`)
    GET  /admin/batches         every batch ever created, deleted ones too ({"batches": [{"name", "displayName",
                                "model", "state", "requestCount", "successfulRequestCount", "failedRequestCount",
                                "createTime", "deleted", "images"}], "images_by_display_name": {name: n},
                                "keys_drawn_twice": {name: [key, …]}}: a request key drawn in more than one batch
                                of that display name)
    POST /admin/batches/{id}    {"state": "FAILED" | "EXPIRED" | "CANCELLED"}: end a pending or running batch now

`POST /admin/faults` body (every field optional):

    {"latency": 0.5 | "0.2-1.5" | [0.2, 1.5],   seconds before each answer (fixed or uniform range)
     "next_latencies": [0.3, 3, 3],              the next answers wait these seconds, one each in the order the
                                                 requests arrive (then "latency" again): calls ending apart
     "rate_429": 0.1, "rate_5xx": 0.05,          shares of answers that fail at random (LOCAL_GEMINI_FAULT_SEED)
     "next_429": 2, "retry_delay_s": 7,          the next N answers are 429 with google.rpc.RetryInfo retryDelay
     "next_5xx": 3, "status_5xx": 503,           the next N answers are 5xx (500 and 503 alternate unless given)
     "block_word": "forbidden",                  prompts containing it (any case) are safety-blocked (HTTP 200)
     "block_image_sha256": ["ab12…"],            requests with a reference image of one of these SHA-256s
                                                 (hex of its bytes) are safety-blocked: per-item blocks in a
                                                 batch, where every item shares one prompt
     "block_as": "auto" | "prompt" | "image",    promptFeedback.blockReason PROHIBITED_CONTENT, finishReason
                                                 IMAGE_SAFETY, or "auto": chosen by a hash of the prompt
     "next_malformed": 1, "malformed": "json" | "structure",   invalid JSON, or a 200 of the wrong shape
     "next_no_image": 1, "no_image_reason": "NO_IMAGE" | "STOP",   a text-only answer
     "next_mislabel": 1,                         JPEG bytes labelled image/png (seen live, python-genai#1824)
     "thoughts": true,                           gemini-3* models always add thought parts and a draft image
                                                 (otherwise only when thinkingConfig.includeThoughts)
     "batch_wait_s": 0.5,                        how long a new batch stays PENDING before it runs
     "batch_concurrency": 4,                     a running batch's requests drawn at once (each through the
                                                 generate path: its latency, scripted and random faults, blocks)
     "batch_fail_rate": 0.1,                     share of a batch's requests that fail (500 INTERNAL status in
                                                 the results) without being drawn
     "next_batch_state": "FAILED" | "EXPIRED",   the next batch created ends so when it would start, no results
     "files_latency_s": 2}                       seconds before a finished upload or a download answers

Scripted faults ("next N") apply in this order: 429, 5xx, malformed, no image; then the random shares, then
the blocks (word, then reference hashes). Injected 429/5xx/malformed/no-image answers count in
`errors_injected`, blocks in `blocked`.

Environment (the standalone server and `LocalGemini.from_env`):

    LOCAL_GEMINI_API_KEY      the one accepted key (default: any non-empty key is accepted)
    LOCAL_GEMINI_DRAW_PX      draw small: longest side N px, same aspect (benchmarks); default the real size
    LOCAL_GEMINI_LATENCY      "0.5" or "0.2-1.5" seconds
    LOCAL_GEMINI_RATE_429     share 0-1 of answers that are 429
    LOCAL_GEMINI_RATE_5XX     share 0-1 of answers that are 500/503
    LOCAL_GEMINI_RETRY_DELAY  the retryDelay of 429 answers, seconds (default 1)
    LOCAL_GEMINI_BLOCK_WORD   prompts containing it are safety-blocked
    LOCAL_GEMINI_FAULT_SEED   seeds the random fault draws and the latency range
    LOCAL_GEMINI_MAX_FILE_BYTES   the Files API's size limit per file (default Google's 2 GB, 2000000000)
    LOCAL_GEMINI_BATCH_WAIT_S     seconds a new batch stays pending (default 0.5)
    LOCAL_GEMINI_BATCH_CONCURRENCY    a batch's requests drawn at once (default 4)
    LOCAL_GEMINI_BATCH_FAIL_RATE  share 0-1 of a batch's requests that fail
    LOCAL_GEMINI_FILES_LATENCY    seconds before a finished upload or a download answers (slow transfers)

As strict as the real API (a stand-in may be stricter, never looser):

- a request body is read as Google's proto-JSON parser reads it (`local.gemini.schema`, its rules and sources):
  an unknown field anywhere, a value of the wrong type, a bad enum value answer 400 INVALID_ARGUMENT with a
  `google.rpc.BadRequest` naming each field;
- a request body over 20 MiB answers 400 INVALID_ARGUMENT "Request payload size exceeds the limit: 20971520 bytes."
  (`worker.catalogue.MAX_REQUEST_BYTES`, its sources);
- responseModalities other than IMAGE or TEXT+IMAGE (AUDIO, for one) answer 400 (`wire.modalities_error`);
- a key is taken from `x-goog-api-key` or `?key=`; an `Authorization: Bearer` header is read as an OAuth token, as
  Google does, and an API key there answers 401 UNAUTHENTICATED (`answers.key_error`);
- every error, an unknown path or method included, is Google's error JSON, never plain text or HTML.

A request part may point to a file uploaded through the Files API (`fileData.fileUri`): it is read as the file's
bytes inline (a missing or expired file answers 403 PERMISSION_DENIED), online and in batches alike.

Not implemented: streamGenerateContent, asyncBatchEmbedContent and thought-signature checks on replayed model
turns (the worker sends single-turn requests only); they answer 404 NOT_FOUND. Batch priorities and webhooks are
accepted and ignored.

Run standalone: `python -m local.gemini --port 8765 [--host 127.0.0.1] [--api-key K]`, then point the
worker at it with `GEMINI_BASE_URL=http://127.0.0.1:8765`. Embedded: `async with LocalGemini(port=0) as g:`
and use `g.url`.
"""

import asyncio
import base64
import hashlib
import json
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

from local.gemini.answers import (
    blocked_body,
    key_error,
    malformed,
    no_image_body,
    quota_exceeded,
    server_error,
    success_body,
)
from local.gemini.batches import (
    DEFAULT_BATCHES_PAGE,
    MAX_BATCHES_PAGE,
    BatchError,
    BatchSettings,
    BatchState,
    BatchStore,
    Outcome,
)
from local.gemini.describe import refusal as text_refusal
from local.gemini.describe import text_body
from local.gemini.faults import (
    REQUEST_LOG_SIZE,
    Faults,
    ReceivedRequest,
    Stats,
)
from local.gemini.files import DEFAULT_FILES_PAGE, MAX_FILE_BYTES, MAX_FILES_PAGE, FileError, FileStore
from local.gemini.schema import (
    BATCH_GENERATE_CONTENT_REQUEST,
    COUNT_TOKENS_REQUEST,
    GENERATE_CONTENT_REQUEST,
    Message,
    check,
)
from local.gemini.tokens import count_response
from local.gemini.wire import (
    API_VERSIONS,
    JsonObject,
    ParsedRequest,
    b64decode_any,
    bad_request,
    camelize,
    error_response,
    invalid_argument,
    parse_request,
)
from worker.catalogue import MAX_REQUEST_BYTES, MODELS, PREVIEW_ALIASES, ModelSpec, is_text_model, model_spec

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50  # models.list: "If unspecified, 50 models will be returned per page" (ai.google.dev/api/models)
BODY_BYTES = web.RequestKey("body_bytes", int)  # the size of the request body as read, for `received`
MAX_PAGE_SIZE = 1000  # "This method returns at most 1000 models per page, even if you pass a larger pageSize."


@web.middleware
async def google_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer an unknown path or HTTP method of the API in Google's error JSON (404 NOT_FOUND), never aiohttp's text.

    Google's front end answers a (method, path) it does not serve with 404 and its error JSON; the admin and stats
    routes, which are not Google's, keep aiohttp's answers.
    """
    try:
        response: web.StreamResponse = await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        if request.path.startswith(("/admin", "/stats")):
            raise
        return error_response(404, "NOT_FOUND", f"Method not found: {request.method} {request.path}.")
    return response


def model_resource(spec: ModelSpec) -> JsonObject:
    """Return a model's resource as `models.get` and `models.list` show it (https://ai.google.dev/api/models#Model)."""
    return {
        "name": f"models/{spec.name}",
        "baseModelId": spec.name,
        "version": "local",
        "displayName": spec.name,
        "description": "Drawn procedurally by the local Gemini-compatible server.",
        "inputTokenLimit": 32768,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def listed_models() -> list[ModelSpec]:
    """Return the models `models.list` shows: the catalogue's, then their preview names, sorted by name."""
    return sorted([*MODELS.values(), *(model_spec(alias) for alias in PREVIEW_ALIASES)], key=lambda s: s.name)


class LocalGemini:
    """The local Gemini-compatible server; `async with LocalGemini(port=0) as g:` serves it at `g.url`.

    Args:
        host: the address to listen on (127.0.0.1 unless you mean to expose it).
        port: the port; 0 picks a free one.
        api_key: the one accepted `x-goog-api-key`; None accepts any non-empty key.
        faults: the faults to start with (and to restore on reset); None for none.
        draw_px: draw images with this longest side instead of the real size (same aspect), for benchmarks.
        fault_seed: seeds the random fault draws and latency ranges, for repeatable benchmarks.
        max_file_bytes: the largest file the Files API accepts (Google's 2 GB unless a test wants less).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        faults: Faults | None = None,
        draw_px: int | None = None,
        fault_seed: int | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.draw_px = draw_px
        self._initial_faults = Faults(**asdict(faults)) if faults is not None else Faults()
        self.faults = Faults(**asdict(self._initial_faults))
        self.stats = Stats()
        self.received: deque[ReceivedRequest] = deque(maxlen=REQUEST_LOG_SIZE)
        self._fault_seed = fault_seed
        self._rng = random.Random(fault_seed)  # noqa: S311 - fault draws, not secrets
        self._next_5xx_is_503 = False
        self._runner: web.AppRunner | None = None
        self.files = FileStore(max_file_bytes=max_file_bytes)
        self.batches = BatchStore(self.files, self._draw_batch_request, self._batch_settings, self._rng)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Self:
        """Build a server from the `LOCAL_GEMINI_*` variables; keyword arguments win over them.

        Raises:
            ValueError: a variable is set to something unusable.
        """
        kwargs: dict[str, Any] = {"faults": Faults.from_env(env)}
        if key := env.get("LOCAL_GEMINI_API_KEY", "").strip():
            kwargs["api_key"] = key
        if px := env.get("LOCAL_GEMINI_DRAW_PX", "").strip():
            kwargs["draw_px"] = int(px)
            if kwargs["draw_px"] < 1:
                raise ValueError(f"LOCAL_GEMINI_DRAW_PX must be a positive integer, got {px!r}")
        if seed := env.get("LOCAL_GEMINI_FAULT_SEED", "").strip():
            kwargs["fault_seed"] = int(seed)
        if limit := env.get("LOCAL_GEMINI_MAX_FILE_BYTES", "").strip():
            kwargs["max_file_bytes"] = int(limit)
            if kwargs["max_file_bytes"] < 1:
                raise ValueError(f"LOCAL_GEMINI_MAX_FILE_BYTES must be a positive integer, got {limit!r}")
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """Return the aiohttp application (for `web.run_app` or a test server)."""
        app = web.Application(client_max_size=100 * 1024 * 1024, middlewares=[google_errors])
        app.router.add_post("/{version}/models/{call}", self._handle_model_call)
        app.router.add_get("/{version}/models/{model}", self._handle_get_model)
        app.router.add_get("/{version}/models", self._handle_list_models)
        app.router.add_post("/upload/{version}/files", self._handle_upload)
        app.router.add_get("/{version}/files", self._handle_list_files)
        app.router.add_get("/{version}/files/{file}", self._handle_get_file)
        app.router.add_delete("/{version}/files/{file}", self._handle_delete_file)
        app.router.add_get("/{version}/batches", self._handle_list_batches)
        app.router.add_get("/{version}/batches/{batch}", self._handle_get_batch)
        app.router.add_post("/{version}/batches/{batch}", self._handle_cancel_batch)
        app.router.add_delete("/{version}/batches/{batch}", self._handle_delete_batch)
        app.router.add_get("/admin/batches", self._handle_admin_batches)
        app.router.add_post("/admin/batches/{batch}", self._handle_force_batch)
        app.router.add_get("/stats", self._handle_stats)
        app.router.add_post("/admin/clock", self._handle_clock)
        app.router.add_get("/admin/faults", self._handle_get_faults)
        app.router.add_post("/admin/faults", self._handle_set_faults)
        app.router.add_post("/admin/reset", self._handle_reset)
        app.router.add_get("/admin/requests", self._handle_requests)
        app.on_startup.append(self._open_stores)
        app.on_cleanup.append(self._close_stores)
        return app

    async def _open_stores(self, app: web.Application) -> None:
        """Make the Files API's directory (on start-up, so `python -m local.gemini`'s `run_app` gets it too)."""
        await asyncio.to_thread(self.files.open)

    async def _close_stores(self, app: web.Application) -> None:
        """Stop every batch, then remove the Files API's directory and every byte in it."""
        await self.batches.close()
        await asyncio.to_thread(self.files.close)

    async def start(self) -> None:
        """Start listening; `url` then says where."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
                break
        log.info("local Gemini listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL to give the SDK (`HttpOptions(base_url=…)` / `GEMINI_BASE_URL`)."""
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Zero the statistics, forget scripted faults and restore the faults the server started with."""
        self.stats = Stats(in_flight=self.stats.in_flight)
        self.faults = Faults(**asdict(self._initial_faults))
        self.received.clear()
        self._rng = random.Random(self._fault_seed)  # noqa: S311 - fault draws, not secrets
        self.batches.rng = self._rng
        self._next_5xx_is_503 = False

    def set_faults(self, **changes: object) -> None:
        """Merge fault changes (the admin JSON's fields) into the current faults.

        Raises:
            ValueError: an unknown field or an invalid value.
        """
        self.faults.update(changes)

    # -- admin ----------------------------------------------------------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())

    async def _handle_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def _handle_set_faults(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        if not isinstance(changes, dict):
            return web.json_response({"error": "body must be a JSON object"}, status=400)
        try:
            self.faults.update(changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        log.info("faults set: %s", sorted(changes))
        return web.json_response(self.faults.to_json())

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"stats": self.stats.to_json(), "faults": self.faults.to_json()})

    async def _handle_requests(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(r) for r in self.received])

    async def _handle_clock(self, request: web.Request) -> web.Response:
        """Move the Files API's clock on by `{"advance_s": N}` seconds (to expire files without waiting 48 h)."""
        try:
            changes = await request.json()
            seconds = float(changes["advance_s"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return web.json_response({"error": 'body must be {"advance_s": seconds}'}, status=400)
        if seconds < 0:
            return web.json_response({"error": "the clock only moves on"}, status=400)
        self.files.advance(seconds)
        return web.json_response({"now": self.files.now()})

    # -- the Files API (`local.gemini.files`: the protocol and its sources) ---------------------------------

    async def _handle_upload(self, request: web.Request) -> web.StreamResponse:
        """Answer the resumable upload protocol: `start` opens a session, `upload[, finalize]` adds its bytes."""
        version = request.match_info["version"]
        if version not in API_VERSIONS:
            return error_response(404, "NOT_FOUND", f"Method not found: POST {request.path}.")
        commands = {c.strip().lower() for c in request.headers.get("X-Goog-Upload-Command", "").split(",")}
        try:
            if "upload_id" not in request.query:
                if (denied := key_error(request, self.api_key)) is not None:
                    self.stats.unauthorized += 1
                    return denied
                return await self._start_upload(request, version, commands)
            # The chunks carry no key (google-genai sends only the upload headers): the session id in the upload
            # URL is the credential, as in Google's resumable protocol.
            return await self._continue_upload(request, version, commands)
        except FileError as exc:
            return error_response(exc.code, exc.status, exc.message)

    async def _start_upload(self, request: web.Request, version: str, commands: set[str]) -> web.Response:
        if request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable" or commands != {"start"}:
            # Stricter than Google, which also takes multipart and raw media uploads: the SDK uses only this one.
            return invalid_argument("Only the resumable upload protocol is served: X-Goog-Upload-Command: start.")
        try:
            body = camelize(await request.json()) if await request.read() else {}
        except json.JSONDecodeError:
            return invalid_argument("Invalid JSON payload received. Unexpected token.")
        meta = body.get("file") if isinstance(body, dict) else None
        if meta is not None and not isinstance(meta, dict):
            return invalid_argument("Invalid value at 'file': not an object")
        size_text = request.headers.get("X-Goog-Upload-Header-Content-Length", "")
        try:
            size = int(size_text)
        except ValueError:
            return invalid_argument("X-Goog-Upload-Header-Content-Length must be a size in bytes.")
        mime = request.headers.get("X-Goog-Upload-Header-Content-Type", "")
        upload_id = self.files.start_upload(meta or {}, size, mime)
        upload_url = f"{self.url}/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable"
        return web.Response(
            status=200,
            headers={"X-Goog-Upload-URL": upload_url, "X-Goog-Upload-Status": "active"},
        )

    async def _continue_upload(self, request: web.Request, version: str, commands: set[str]) -> web.Response:
        upload_id = request.query["upload_id"]
        if not commands <= {"upload", "finalize"} or not commands:
            return invalid_argument("X-Goog-Upload-Command must be upload, finalize or both.")
        if "upload" in commands:
            try:
                offset = int(request.headers.get("X-Goog-Upload-Offset", ""))
            except ValueError:
                return invalid_argument("X-Goog-Upload-Offset must be a byte offset.")
            await asyncio.to_thread(self.files.append, upload_id, offset, await request.read())
        if "finalize" not in commands:
            return web.Response(status=200, headers={"X-Goog-Upload-Status": "active"})
        await asyncio.sleep(self.faults.files_latency_s)
        stored = await asyncio.to_thread(self.files.finalize, upload_id)
        log.info("file %s uploaded (%d bytes)", stored.file_id, stored.size)
        return web.json_response(
            {"file": stored.resource(self.url, version)}, headers={"X-Goog-Upload-Status": "final"}
        )

    async def _handle_get_file(self, request: web.Request) -> web.StreamResponse:
        """Answer files.get (https://ai.google.dev/api/files#method:-files.get) and `{id}:download?alt=media`."""
        version, file_id = request.match_info["version"], request.match_info["file"]
        if (refused := self._refused(request, version, f"Method not found: GET {request.path}.")) is not None:
            return refused
        file_id, _, method = file_id.partition(":")
        try:
            if method == "download":
                return await self._download(request, file_id)
            if method:
                return error_response(404, "NOT_FOUND", f"Method not found: GET {request.path}.")
            return web.json_response(self.files.get(file_id).resource(self.url, version))
        except FileError as exc:
            return error_response(exc.code, exc.status, exc.message)

    async def _download(self, request: web.Request, file_id: str) -> web.StreamResponse:
        if request.query.get("alt") != "media":
            return invalid_argument("Downloads are served with alt=media.")
        stored = self.files.get(file_id)
        await asyncio.sleep(self.faults.files_latency_s)
        chunks = self.files.read(file_id)
        first = await anext(chunks, b"")  # raises FileError before any byte is sent
        response = web.StreamResponse(headers={"Content-Type": stored.mime_type})
        response.content_length = stored.size
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _handle_delete_file(self, request: web.Request) -> web.Response:
        """Answer files.delete (https://ai.google.dev/api/files#method:-files.delete): `{}` once deleted."""
        version, file_id = request.match_info["version"], request.match_info["file"]
        if (refused := self._refused(request, version, f"Method not found: DELETE {request.path}.")) is not None:
            return refused
        try:
            self.files.delete(file_id)
        except FileError as exc:
            return error_response(exc.code, exc.status, exc.message)
        return web.json_response({})

    async def _handle_list_files(self, request: web.Request) -> web.Response:
        """Answer files.list (https://ai.google.dev/api/files#method:-files.list): a page and the next token."""
        version = request.match_info["version"]
        return self._listing(
            request,
            version,
            field="files",
            items=self.files.listed,
            sizes=(DEFAULT_FILES_PAGE, MAX_FILES_PAGE),
            render=lambda f: f.resource(self.url, version),
        )

    def _listing(
        self,
        request: web.Request,
        version: str,
        *,
        field: str,
        items: Callable[[], list[T]],
        sizes: tuple[int, int],
        render: Callable[[T], JsonObject],
    ) -> web.Response:
        """Answer a list method: the key's or path's refusal, or one page of `items()` under `field` and its token."""
        if (refused := self._refused(request, version, f"Method not found: GET {request.path}.")) is not None:
            return refused
        page = self._page(request, items(), *sizes)
        if isinstance(page, web.Response):
            return page
        listed, token = page
        answer: JsonObject = {field: [render(item) for item in listed]} if listed else {}
        if token:
            answer["nextPageToken"] = token
        return web.json_response(answer)

    @staticmethod
    def _page(
        request: web.Request, items: list[T], default_size: int, max_size: int
    ) -> tuple[list[T], str | None] | web.Response:
        """Cut `items` at `pageSize` from the offset in `pageToken` (this server's tokens, opaque to callers).

        Returns:
            The page and the next page's token (None on the last page), or the 400 for a bad size or token.
        """
        size_text = request.query.get("pageSize", request.query.get("page_size", "0"))
        try:
            size = int(size_text)
        except ValueError:
            size = -1
        if size < 0:
            return invalid_argument(f"Invalid value at 'page_size' (TYPE_INT32), \"{size_text}\"")
        size = min(size or default_size, max_size)
        token = request.query.get("pageToken", request.query.get("page_token", ""))
        start = 0
        if token:
            try:
                start = int(b64decode_any(token).decode())
            except (ValueError, UnicodeDecodeError):
                start = -1
            if not 0 < start < len(items):
                return invalid_argument("Invalid page token.")
        following = start + size < len(items)
        next_token = base64.urlsafe_b64encode(str(start + size).encode()).decode() if following else None
        return items[start : start + size], next_token

    # -- the Batch API (`local.gemini.batches`: the protocol and its sources) ----------------------------------

    def _batch_settings(self) -> BatchSettings:
        fate = self.faults.next_batch_state
        return BatchSettings(
            wait_s=self.faults.batch_wait_s,
            concurrency=self.faults.batch_concurrency,
            fail_rate=self.faults.batch_fail_rate,
            next_state=BatchState(f"BATCH_STATE_{fate}") if fate else None,
        )

    async def _batch_generate_content(self, request: web.Request, version: str, model: str) -> web.Response:
        """Answer `models.batchGenerateContent` (https://ai.google.dev/api/batch-mode): the new batch's Operation.

        The key, then the model (only the catalogue's image models take batches here), then the body as Google's
        proto-JSON parser reads it (an inlined request is part of it, so a bad one refuses the batch).
        """
        if (denied := key_error(request, self.api_key)) is not None:
            self.stats.unauthorized += 1
            return denied
        if not model_spec(model).known:
            return error_response(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {version}, or is not supported for batchGenerateContent.",
            )
        payload = await request.read()
        if len(payload) > MAX_REQUEST_BYTES:
            # Inlined requests: "keep the total request size under 20MB" (ai.google.dev/gemini-api/docs/batch-api).
            return invalid_argument(f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")
        try:
            raw = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return invalid_argument("Invalid JSON payload received. Unexpected token.")
        if violations := check(BATCH_GENERATE_CONTENT_REQUEST, raw, version=version):
            return bad_request(violations)
        batch = _member(raw, "batch") or {}
        display_name = _member(batch, "display_name")
        if not isinstance(display_name, str) or not display_name:
            # "batch.displayName: Required. The user-defined name of this batch." (the wording assumed)
            return invalid_argument("* BatchGenerateContentRequest.batch.display_name: display_name is required.")
        source = _member(batch, "input_config") or {}
        file_name = _member(source, "file_name")
        inline = _member(_member(source, "requests") or {}, "requests")
        if not file_name and not inline:
            return invalid_argument("* BatchGenerateContentRequest.batch.input_config: input_config is required.")
        try:
            made = await self.batches.create(
                model=model_spec(model).name,
                version=version,
                display_name=display_name,
                inline=list(inline) if inline else None,
                file_name=str(file_name) if not inline else None,
            )
        except BatchError as exc:
            return error_response(exc.code, exc.status, exc.message)
        self.stats.batches_created += 1
        if made.fate is not None:
            self.faults.next_batch_state = None  # "the next batch": this one
        log.info("batch %s created (%d requests, %s)", made.name, made.request_count, display_name)
        return web.json_response(made.operation(version))

    async def _draw_batch_request(self, model: str, version: str, raw: object, cache: dict[str, bytes]) -> Outcome:
        """Draw one request of a batch with generateContent's own code; its error answers become its status."""
        self.stats.batch_requests += 1
        spec = model_spec(model)
        if violations := check(GENERATE_CONTENT_REQUEST, raw, version=version):
            return _outcome(bad_request(violations))
        assert isinstance(raw, dict)  # `check` refuses anything but an object
        resolved = await self._resolve_files(camelize(raw), cache)
        if isinstance(resolved, web.Response):
            return _outcome(resolved)
        parsed = parse_request(spec, resolved)
        if isinstance(parsed, web.Response):
            return _outcome(parsed)
        answer, image = await self._answer(spec, model, version, parsed, body_bytes=0, batch=True)
        return _outcome(answer, image=image)

    def _refused(self, request: web.Request, version: str, unknown: str) -> web.Response | None:
        """Return the refusal of a request to an unknown API version (404 `unknown`) or with a wrong key, or None."""
        if version not in API_VERSIONS:
            return error_response(404, "NOT_FOUND", unknown)
        if (denied := key_error(request, self.api_key)) is not None:
            self.stats.unauthorized += 1
            return denied
        return None

    def _batch_route(self, request: web.Request) -> tuple[str, str, str] | web.Response:
        """Return (version, batch id, method after ':') of a batches/{id} route, or the key's or path's refusal."""
        version = request.match_info["version"]
        batch_id, _, method = request.match_info["batch"].partition(":")
        unknown = f"Method not found: {request.method} {request.path}."
        if (refused := self._refused(request, version, unknown)) is not None:
            return refused
        return version, batch_id, method

    async def _handle_get_batch(self, request: web.Request) -> web.Response:
        """Answer batches.get (https://ai.google.dev/api/batch-mode#method:-batches.get): the batch's Operation."""
        route = self._batch_route(request)
        if isinstance(route, web.Response):
            return route
        version, batch_id, method = route
        if method:
            return error_response(404, "NOT_FOUND", f"Method not found: GET {request.path}.")
        try:
            return web.json_response(self.batches.get(batch_id).operation(version))
        except BatchError as exc:
            return error_response(exc.code, exc.status, exc.message)

    async def _handle_cancel_batch(self, request: web.Request) -> web.Response:
        """Answer batches.cancel (`POST batches/{id}:cancel`): `{}` (google.protobuf.Empty) once cancelled."""
        route = self._batch_route(request)
        if isinstance(route, web.Response):
            return route
        _, batch_id, method = route
        if method != "cancel":
            return error_response(404, "NOT_FOUND", f"Method not found: POST {request.path}.")
        try:
            self.batches.cancel(batch_id)
        except BatchError as exc:
            return error_response(exc.code, exc.status, exc.message)
        return web.json_response({})

    async def _handle_delete_batch(self, request: web.Request) -> web.Response:
        """Answer batches.delete (https://ai.google.dev/api/batch-mode#method:-batches.delete): `{}` once deleted."""
        route = self._batch_route(request)
        if isinstance(route, web.Response):
            return route
        _, batch_id, method = route
        if method:
            return error_response(404, "NOT_FOUND", f"Method not found: DELETE {request.path}.")
        try:
            self.batches.delete(batch_id)
        except BatchError as exc:
            return error_response(exc.code, exc.status, exc.message)
        return web.json_response({})

    async def _handle_list_batches(self, request: web.Request) -> web.Response:
        """Answer batches.list (https://ai.google.dev/api/batch-mode#method:-batches.list): `operations`, a page."""
        version = request.match_info["version"]
        return self._listing(
            request,
            version,
            field="operations",
            items=self.batches.listed,
            sizes=(DEFAULT_BATCHES_PAGE, MAX_BATCHES_PAGE),
            render=lambda b: b.operation(version),
        )

    async def _handle_admin_batches(self, request: web.Request) -> web.Response:
        """Show every batch ever created (deleted ones too) and the images drawn per display name and key."""
        batches = self.batches.every()
        by_name: dict[str, int] = {}
        keys: dict[str, dict[str, int]] = {}
        for batch in batches:
            by_name[batch.display_name] = by_name.get(batch.display_name, 0) + sum(batch.drawn.values())
            drawn = keys.setdefault(batch.display_name, {})
            for key, count in batch.drawn.items():
                drawn[key] = drawn.get(key, 0) + count
        twice = {name: sorted(k for k, n in drawn.items() if n > 1) for name, drawn in keys.items()}
        return web.json_response(
            {
                "batches": [b.summary() for b in batches],
                "images_by_display_name": by_name,
                "keys_drawn_twice": {name: found for name, found in twice.items() if found},
            }
        )

    async def _handle_force_batch(self, request: web.Request) -> web.Response:
        """End a pending or running batch at once: `{"state": "FAILED" | "EXPIRED" | "CANCELLED"}`."""
        try:
            body = await request.json()
            state = BatchState("BATCH_STATE_" + str(body["state"]).removeprefix("BATCH_STATE_"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            usage = 'body must be {"state": "FAILED" | "EXPIRED" | "CANCELLED"}'
            return web.json_response({"error": usage}, status=400)
        try:
            batch = self.batches.force(request.match_info["batch"].removeprefix("batches/"), state)
        except BatchError as exc:
            return web.json_response({"error": exc.message}, status=exc.code)
        return web.json_response(batch.summary())

    # -- the API --------------------------------------------------------------------------------------------

    async def _handle_get_model(self, request: web.Request) -> web.Response:
        """Answer `models.get` (https://ai.google.dev/api/models#method:-models.get).

        The key is checked first, as Google does; then only models the catalogue knows exist (stricter than
        Google, which also has text models).
        """
        version, model = request.match_info["version"], request.match_info["model"]
        if (refused := self._refused(request, version, f"Method is not found for {request.path}.")) is not None:
            return refused
        spec = model_spec(model)
        if not spec.known:
            return error_response(404, "NOT_FOUND", f"models/{model} is not found for API version {version}.")
        return web.json_response(model_resource(spec))

    async def _handle_list_models(self, request: web.Request) -> web.Response:
        """Answer `models.list` (https://ai.google.dev/api/models#method:-models.list): a page and the next token.

        `pageSize` is an int32 (0 or absent: 50; over 1000: 1000; negative: refused, stricter than Google);
        `pageToken` must be one this server gave, as Google's tokens are opaque.
        """
        version = request.match_info["version"]
        if (refused := self._refused(request, version, f"Method not found: GET {request.path}.")) is not None:
            return refused
        size_text = request.query.get("pageSize", request.query.get("page_size", "0"))
        try:
            size = int(size_text)
        except ValueError:
            size = -1
        if size < 0:
            return invalid_argument(f"Invalid value at 'page_size' (TYPE_INT32), \"{size_text}\"")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        token = request.query.get("pageToken", request.query.get("page_token", ""))
        models = listed_models()
        start = 0
        if token:
            try:
                start = int(b64decode_any(token).decode())
            except (ValueError, UnicodeDecodeError):
                start = -1
            if not 0 < start < len(models):
                return invalid_argument("Invalid page token.")
        page = models[start : start + size]
        answer: JsonObject = {"models": [model_resource(s) for s in page]}
        if start + size < len(models):
            answer["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return web.json_response(answer)

    async def _handle_model_call(self, request: web.Request) -> web.Response:
        version = request.match_info["version"]
        model, _, method = request.match_info["call"].partition(":")
        if version not in API_VERSIONS or method not in ("generateContent", "countTokens", "batchGenerateContent"):
            return error_response(404, "NOT_FOUND", f"Method not found: POST {request.path}.")
        if method == "countTokens":
            return await self._count_tokens(request, version, model)
        if method == "batchGenerateContent":
            return await self._batch_generate_content(request, version, model)
        self.stats.requests += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            return await self._generate_content(request, version, model)
        finally:
            self.stats.in_flight -= 1

    async def _read_request(
        self, request: web.Request, version: str, model: str, method: str, message: Message
    ) -> tuple[ModelSpec, JsonObject] | web.Response:
        """Check the key, the model and the body (as Google's proto-JSON parser reads `message`).

        Returns:
            The model's spec and the camelized body, or the error answer.
        """
        if (denied := key_error(request, self.api_key)) is not None:
            self.stats.unauthorized += 1
            return denied
        spec = model_spec(model)
        if not spec.known and "image" not in model and not is_text_model(model):
            self.stats.rejected += 1
            return error_response(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {version}, or is not supported for {method}.",
            )
        payload = await request.read()
        request[BODY_BYTES] = len(payload)
        if len(payload) > MAX_REQUEST_BYTES:
            # "The total request size limit is 20 MB" (`worker.catalogue.MAX_REQUEST_BYTES`, its sources).
            self.stats.rejected += 1
            return invalid_argument(f"Request payload size exceeds the limit: {MAX_REQUEST_BYTES} bytes.")
        try:
            raw = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.stats.rejected += 1
            return invalid_argument("Invalid JSON payload received. Unexpected token.")
        if violations := check(message, raw, version=version):
            self.stats.rejected += 1
            return bad_request(violations)
        return spec, camelize(raw)

    async def _count_tokens(self, request: web.Request, version: str, model: str) -> web.Response:
        """Answer `countTokens` (https://ai.google.dev/api/tokens#method:-models.counttokens)."""
        read = await self._read_request(request, version, model, "countTokens", COUNT_TOKENS_REQUEST)
        if isinstance(read, web.Response):
            return read
        spec, body = read
        if body.get("contents") and body.get("generateContentRequest"):
            # "Note: contents and generate_content_request are mutually exclusive." (ai.google.dev/api/tokens)
            return invalid_argument("contents and generate_content_request are mutually exclusive.")
        inner = body.get("generateContentRequest") or {"contents": body.get("contents")}
        parsed = parse_request(spec, inner)
        if isinstance(parsed, web.Response):
            return parsed
        try:
            return web.json_response(count_response(spec, parsed.texts, parsed.images))
        except ValueError:
            return invalid_argument("Unable to process input image.")

    async def _generate_content(self, request: web.Request, version: str, model: str) -> web.Response:
        read = await self._read_request(request, version, model, "generateContent", GENERATE_CONTENT_REQUEST)
        if isinstance(read, web.Response):
            return read
        spec, body = read
        resolved = await self._resolve_files(body, {})
        if isinstance(resolved, web.Response):
            self.stats.rejected += 1
            return resolved
        if is_text_model(model):
            return await self._text_answer(spec, model, version, resolved, body_bytes=request.get(BODY_BYTES, 0))
        parsed = parse_request(spec, resolved)
        if isinstance(parsed, web.Response):
            self.stats.rejected += 1
            return parsed
        answer, _ = await self._answer(spec, model, version, parsed, body_bytes=request.get(BODY_BYTES, 0))
        return answer

    async def _text_answer(
        self, spec: ModelSpec, model: str, version: str, body: JsonObject, *, body_bytes: int
    ) -> web.Response:
        """Answer a text model's generateContent (`local.gemini.describe`): its refusals, faults, blocks or text."""
        config = body.get("generationConfig") or {}
        refused = text_refusal(spec, config) if isinstance(config, dict) else None
        parsed = refused or parse_request(spec, body)
        if isinstance(parsed, web.Response):
            self.stats.rejected += 1
            return parsed
        self.received.append(
            ReceivedRequest(
                model=model,
                api_version=version,
                prompt=parsed.prompt[:500],
                images=len(parsed.images),
                image_sha256=tuple(hashlib.sha256(i).hexdigest() for i in parsed.images),
                aspect_ratio=None,
                image_size=None,
                seed=parsed.seed,
                response_modalities=parsed.modalities,
                include_thoughts=parsed.include_thoughts,
                body_bytes=body_bytes,
                batch=False,
            )
        )
        if (injected := self._injected_fault(spec)) is not None:
            self.stats.errors_injected += 1
            return injected
        if self._is_blocked(parsed.prompt) or self._has_blocked_image(parsed.images):
            self.stats.blocked += 1
            return web.json_response(blocked_body(spec, parsed, "prompt"))
        return web.json_response(text_body(spec, parsed, config if isinstance(config, dict) else {}))

    async def _answer(
        self, spec: ModelSpec, model: str, version: str, parsed: ParsedRequest, *, body_bytes: int, batch: bool = False
    ) -> tuple[web.Response, bool]:
        """Answer a valid request as generateContent does: its latency, faults, blocks, or the drawn image.

        Returns:
            The answer and whether it holds a drawn image. A batch's requests (`batch`) count in `batch_images`,
            not in the online `images`, `errors_injected` and `blocked`.
        """
        self.received.append(
            ReceivedRequest(
                model=model,
                api_version=version,
                prompt=parsed.prompt[:500],
                images=len(parsed.images),
                image_sha256=tuple(hashlib.sha256(i).hexdigest() for i in parsed.images),
                aspect_ratio=parsed.aspect_ratio,
                image_size=parsed.image_size,
                seed=parsed.seed,
                response_modalities=parsed.modalities,
                include_thoughts=parsed.include_thoughts,
                body_bytes=body_bytes,
                batch=batch,
            )
        )
        low, high = self.faults.latency_s
        if self.faults.next_latencies:
            wait_s, *self.faults.next_latencies = self.faults.next_latencies
            await asyncio.sleep(wait_s)
        elif high > 0:
            await asyncio.sleep(low if low == high else self._rng.uniform(low, high))
        if (injected := self._injected_fault(spec)) is not None:
            if not batch:
                self.stats.errors_injected += 1
            return injected, False
        if self._is_blocked(parsed.prompt) or self._has_blocked_image(parsed.images):
            if not batch:
                self.stats.blocked += 1
            return web.json_response(blocked_body(spec, parsed, self.faults.block_as)), False
        mislabel = self.faults.next_mislabel > 0
        if mislabel:
            self.faults.next_mislabel -= 1
        body_out = await success_body(
            spec, parsed, draw_px=self.draw_px, mislabel=mislabel, thoughts=self.faults.thoughts
        )
        if batch:
            self.stats.batch_images += 1
        else:
            self.stats.images += 1
        return web.json_response(body_out), True

    async def _resolve_files(self, body: JsonObject, cache: dict[str, bytes]) -> JsonObject | web.Response:
        """Return the body with each `fileData` part replaced by the file's bytes inline, as Gemini reads them.

        A part may point to a file uploaded through the Files API ("you can reference other uploaded files within
        your JSONL file", https://ai.google.dev/gemini-api/docs/batch-api#input-file) by its `fileUri` (the File's
        `uri`, or "files/{id}"). A file that does not exist or expired answers 403 PERMISSION_DENIED, the Files API's
        answer for it. `cache` keeps the bytes read, so a batch reads each shared reference once.
        """
        contents = body.get("contents")
        if not isinstance(contents, list) or not any(
            isinstance(p, dict) and "fileData" in p
            for c in contents
            if isinstance(c, dict)
            for p in (c.get("parts") or [])
        ):
            return body
        resolved: list[object] = []
        for content in contents:
            if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
                resolved.append(content)
                continue
            parts: list[object] = []
            for part in content["parts"]:
                file_data = part.get("fileData") if isinstance(part, dict) else None
                if not isinstance(file_data, dict):
                    parts.append(part)
                    continue
                file_id = str(file_data.get("fileUri", "")).rpartition("files/")[2]
                try:
                    stored = self.files.get(file_id)
                    if file_id not in cache:
                        cache[file_id] = await asyncio.to_thread(self.files.read_bytes, file_id)
                except FileError as exc:
                    return error_response(exc.code, exc.status, exc.message)
                mime = file_data.get("mimeType") or stored.mime_type
                inline = {"mimeType": mime, "data": base64.b64encode(cache[file_id]).decode()}
                parts.append({k: v for k, v in part.items() if k != "fileData"} | {"inlineData": inline})
            resolved.append(content | {"parts": parts})
        return body | {"contents": resolved}

    def _injected_fault(self, spec: ModelSpec) -> web.Response | None:
        faults = self.faults
        if faults.next_429 > 0:
            faults.next_429 -= 1
            return quota_exceeded(spec, self.faults.retry_delay_s)
        if faults.next_5xx > 0:
            faults.next_5xx -= 1
            return self._server_error()
        if faults.next_malformed > 0:
            faults.next_malformed -= 1
            return malformed(self.faults.malformed)
        if faults.next_no_image > 0:
            faults.next_no_image -= 1
            return web.json_response(no_image_body(spec, self.faults.no_image_reason))
        if faults.rate_429 and self._rng.random() < faults.rate_429:
            return quota_exceeded(spec, self.faults.retry_delay_s)
        if faults.rate_5xx and self._rng.random() < faults.rate_5xx:
            return self._server_error()
        return None

    def _server_error(self) -> web.Response:
        status = self.faults.status_5xx
        if status is None:
            status = 503 if self._next_5xx_is_503 else 500
            self._next_5xx_is_503 = not self._next_5xx_is_503
        return server_error(status)

    def _is_blocked(self, prompt: str) -> bool:
        word = self.faults.block_word
        return word is not None and word.casefold() in prompt.casefold()

    def _has_blocked_image(self, images: list[bytes]) -> bool:
        blocked = self.faults.block_image_sha256
        return bool(blocked) and any(hashlib.sha256(i).hexdigest() in blocked for i in images)


def _member(message: object, proto_name: str) -> Any:
    """Return a field of a JSON message by its proto name or its lowerCamelCase JSON name (both are accepted)."""
    if not isinstance(message, dict):
        return None
    if proto_name in message:
        return message[proto_name]
    head, *rest = proto_name.split("_")
    return message.get(head + "".join(word.capitalize() for word in rest))


def _outcome(answer: web.Response, *, image: bool = False) -> Outcome:
    """Read an answer of the generate path as a batch request's outcome: its body, or its error's Status."""
    try:
        body = json.loads(answer.body) if isinstance(answer.body, bytes) else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if answer.status == 200 and isinstance(body, dict):
        return Outcome(response=body, image=image)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return Outcome(error=body["error"])
    return Outcome(error={"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"})
