r"""`python -m worker`: the RunPod Serverless worker (composition root).

Builds everything once, outside the handler (settings, store, Gemini client), then hands the handler to the runpod
SDK's runtime. The SDK decides the mode: with `RUNPOD_WEBHOOK_GET_JOB` set (on RunPod, or under the local
endpoint) it takes jobs forever; with `--test_input '{"input": {…}}'` it runs that one job, logs
`Job result: {…}` and exits 0, or 1 when the job failed (RunPod's own convention, `runpod/serverless/modules/
rp_local.py`):

    python -m local.gemini --port 8790 &
    GEMINI_API_KEY=local GEMINI_BASE_URL=http://127.0.0.1:8790 \\
        python -m worker --test_input "$(cat worker/test_input.json)"

Unusable settings (say, no `GEMINI_API_KEY`) end the process with status 2 and one line naming the variable.
"""

import asyncio
import gc
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable

import runpod
from pydantic import ValidationError

from storage import StorageError, Store, open_store
from worker.deps import RunpodJob, WorkerDeps, discard_progress
from worker.gemini import GeminiImageGenerator, GeminiSettings
from worker.handler import Handler, make_handler
from worker.settings import WorkerSettings, describe_settings_error

log = logging.getLogger("worker")

EXIT_BAD_SETTINGS = 2


class StartupError(Exception):
    """The worker cannot start as configured; the message names the setting."""


def make_concurrency_modifier(
    max_jobs: int,
    *,
    warm_up: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> Callable[[int], int]:
    """Return the SDK's `concurrency_modifier`: always `max_jobs` (it must return an int, runpod-python#458).

    The SDK calls it in its event loop before every job-take, which makes it the one hook that runs in that loop
    before the first job arrives: its first call starts `warm_up` there (the Gemini client's session belongs to
    that loop). A warm-up that fails is logged and changes nothing: the first job then builds what it needs.

    The SDK has no shutdown hook either, so the first call also starts a task that waits for the loop's end and
    then runs `on_stop`: when the SDK's run ends (SIGTERM), `asyncio.run` cancels the tasks left and waits for
    them while the loop still runs, and the Gemini session is closed there. Left to the collector at exit, it
    was reported as an "Unclosed client session" by every worker that stopped.
    """
    started: list[asyncio.Task[None]] = []  # holds the tasks so they are not collected mid-way

    async def warm() -> None:
        assert warm_up is not None
        try:
            await warm_up()
        except Exception:  # an optimization only: the first job does the same work itself
            log.warning("worker warm-up failed; the first job builds the Gemini client", exc_info=True)
        freeze_long_lived()  # the client and the models it built live as long as the process

    async def stop_with_the_loop() -> None:
        assert on_stop is not None
        try:
            await asyncio.get_running_loop().create_future()  # only cancellation ends this
        finally:
            try:
                await on_stop()
            except Exception:  # the process is ending: say so and let it end
                log.warning("closing the worker's clients failed", exc_info=True)

    def concurrency_modifier(current: int) -> int:
        if not started and (warm_up is not None or on_stop is not None):
            loop = asyncio.get_running_loop()
            if warm_up is not None:
                started.append(loop.create_task(warm()))
            if on_stop is not None:
                started.append(loop.create_task(stop_with_the_loop()))
        return max_jobs

    return concurrency_modifier


def freeze_long_lived() -> None:
    """Move every object alive now out of the garbage collector's reach (`gc.freeze`).

    What start-up builds (modules, google-genai's and pydantic's thousands of classes and schemas) lives as long
    as the process, yet each full collection walks it again, and so does the collection at exit: after a batch a
    worker took 3.3 s to exit on SIGTERM, longer than the endpoint's grace, walking it. Frozen, that exit takes
    1.4 s. Called after start-up and again after the warm-up.
    """
    gc.freeze()


def load_settings() -> tuple[WorkerSettings, GeminiSettings]:
    """Read the worker's and Gemini's settings from the environment (and `.env`).

    Raises:
        StartupError: a setting is missing or invalid.
    """
    try:
        worker_settings = WorkerSettings()
    except ValidationError as exc:
        raise StartupError(describe_settings_error(exc, env_prefix="WORKER_")) from exc
    try:
        gemini_settings = GeminiSettings()  # type: ignore[call-arg]  # api_key comes from the environment
    except ValidationError as exc:
        raise StartupError(describe_settings_error(exc, env_prefix="GEMINI_")) from exc
    if not gemini_settings.api_key.get_secret_value().strip():
        raise StartupError("GEMINI_API_KEY: is empty")
    return worker_settings, gemini_settings


def build_deps(settings: WorkerSettings, gemini: GeminiSettings) -> WorkerDeps:
    """Open the store and the Gemini client and pick the progress sink.

    Raises:
        StartupError: the store URL cannot be opened.
    """
    try:
        store = open_store(settings.storage_url)
    except StorageError as exc:
        raise StartupError(f"STORAGE_URL: {exc}") from exc
    # Without a platform to report to (`--test_input`, or no RunPod env) the SDK's progress_update only logs an
    # error per call, so progress is dropped instead.
    on_platform = bool(os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT"))
    generator = GeminiImageGenerator.from_settings(gemini)
    return WorkerDeps(
        store=store,
        generator=generator,
        model_checker=generator,
        files=generator,
        text=generator,
        progress=runpod.serverless.progress_update if on_platform else discard_progress,
        progress_interval_s=settings.progress_interval_s,
        progress_settle_s=settings.progress_settle_s,
        max_reference_bytes=settings.max_reference_bytes,
        max_reference_pixels=settings.max_reference_pixels,
    )


def make_store_check(store: Store) -> Callable[[], object]:
    """Return a fitness check that writes, reads back and deletes a small object in the store."""

    async def store_is_writable() -> None:
        pod = re.sub(r"[^A-Za-z0-9_.-]", "-", os.environ.get("RUNPOD_POD_ID", "worker")) or "worker"
        key = f"_fitness/{pod}.txt"
        await store.put(key, b"ok", content_type="text/plain")
        if await store.get_bytes(key) != b"ok":
            raise RuntimeError(f"store {store.url} did not read back what was written")
        await store.delete(key)

    return store_is_writable


def closing_after(handler: Handler, generator: GeminiImageGenerator) -> Handler:
    """Wrap a one-shot (`--test_input`) handler so the Gemini session is closed before the SDK exits the process."""

    async def run_then_close(job: RunpodJob) -> dict[str, object]:
        try:
            return await handler(job)
        finally:
            await generator.aclose()

    return run_then_close


def configure_logging(level: str) -> None:
    """Configure logging for the process (the SDK prints its own lines to stdout through its own logger)."""
    # force: importing runpod already ran basicConfig (runpod/serverless/utils/rp_upload.py).
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s | %(message)s", stream=sys.stderr, force=True)
    logging.getLogger().setLevel(level)
    if level != "DEBUG":
        for noisy in ("google_genai", "httpx", "httpcore", "botocore", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> None:
    """Build the worker and run the runpod SDK's runtime with it."""
    configure_logging("INFO")
    try:
        settings, gemini = load_settings()
        configure_logging(settings.log_level)
        deps = build_deps(settings, gemini)
    except StartupError as exc:
        log.error("worker cannot start: %s", exc)  # one clear line, no traceback
        raise SystemExit(EXIT_BAD_SETTINGS) from None
    runpod.serverless.register_fitness_check(make_store_check(deps.store))
    log.info(
        "worker ready: store %s, Gemini %s, up to %d job(s) at once",
        deps.store.url,
        gemini.base_url or "Google",
        settings.max_concurrent_jobs,
    )
    handler = make_handler(deps)
    if any(arg.startswith("--test_input") for arg in sys.argv[1:]) and isinstance(deps.generator, GeminiImageGenerator):
        handler = closing_after(handler, deps.generator)
    freeze_long_lived()
    runpod.serverless.start(
        {
            "handler": handler,
            "concurrency_modifier": make_concurrency_modifier(
                settings.max_concurrent_jobs,
                warm_up=deps.generator.warm_up if isinstance(deps.generator, GeminiImageGenerator) else None,
                on_stop=deps.generator.aclose if isinstance(deps.generator, GeminiImageGenerator) else None,
            ),
        }
    )


if __name__ == "__main__":
    main()
