"""`python -m bot doctor`'s checks: every configured service, tried with the client Peel really uses.

The checks are a use case: they return plain `Check` results, and `bot/cli/doctor.py` prints them. Each group of
checks (configuration, ledger, store, RunPod with the worker's self-test, Discord) runs concurrently with its own
timeout; a group that times out is one ✗ saying so, so a dead address never hangs the run.

The worker's side is proven by one self-test job (`worker.contract.SelfTestInput`): the deployed worker reads an
object the bot wrote, writes one the bot reads back, and looks up each configured Gemini model with its own key.
That one job shows the endpoint takes jobs, a worker starts, it speaks this contract, it shares the bot's store
and its Gemini key works: what a remote worker paired with a local file store can never do.

Discord's checks need discord.py, which this layer does not import: the composition root passes them in as a
`DiscordChecks` callable (`bot/exts/_doctor.py`).
"""

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from pydantic import ValidationError

from bot.app.runtime import Runtime, open_runtime
from bot.core.deployment import RELAX_KEY_FIX, RELAX_NEEDS_KEY
from bot.gemini.types import GeminiBatchError, GeminiProblem
from bot.ledger import LedgerDamagedError, LedgerTooNewError
from bot.runpod.errors import RunpodAuthError, RunpodError, RunpodRejectedError, RunpodUnavailableError
from bot.runpod.types import RemoteJob, RemoteStatus
from bot.settings import BotSettings
from storage import StorageError
from worker.contract import (
    SCHEMA_VERSION,
    ErrorCode,
    ModelProblem,
    SelfTestInput,
    SelfTestResult,
    parse_top_level_error,
)

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 12.0  # one group of checks (ledger, store, RunPod's /health, Discord)
SELFTEST_TIMEOUT_S = 20.0  # the worker's self-test job, queueing included
SELFTEST_POLL_S = 0.5
DOCTOR_PREFIX = "doctor"  # every object doctor writes is under it, and deleted when it is done


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One line of doctor's report: what was checked, how it went and, when it failed, the fix.

    `warning` marks something that works but deserves a look (shown as `!`); it never fails the run.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


DiscordChecks = Callable[[BotSettings], Awaitable[list[Check]]]


def passed(name: str, detail: str) -> Check:
    """Return a passed check."""
    return Check(name=name, ok=True, detail=detail)


def failed(name: str, detail: str, fix: str) -> Check:
    """Return a failed check with its fix."""
    return Check(name=name, ok=False, detail=detail, fix=fix)


def config_checks(settings: BotSettings) -> list[Check]:
    """Return one ✗ per configuration that can never work (the start-up refusal's list), or one ✓."""
    problems = settings.deployment_problems()
    if not problems:
        return [passed("configuration", "no impossible combination of settings")]
    return [failed(f"configuration: {p.setting}", p.problem, p.fix) for p in problems]


async def run_doctor(
    settings: BotSettings,
    *,
    discord: DiscordChecks | None = None,
    check_timeout_s: float = CHECK_TIMEOUT_S,
    selftest_timeout_s: float = SELFTEST_TIMEOUT_S,
) -> list[Check]:
    """Run every check against the configured services (the embedded ones when unset); return them in order."""
    checks = config_checks(settings)
    discord_task = (
        asyncio.create_task(_bounded("Discord", discord(settings), check_timeout_s + selftest_timeout_s))
        if discord is not None
        else None
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            runtime, opening = await _open(stack, settings)
            checks += opening
            if runtime is not None:
                groups = await asyncio.gather(
                    _bounded("ledger", ledger_checks(runtime), check_timeout_s),
                    _bounded("store", store_checks(runtime), check_timeout_s),
                    _bounded("Gemini Batch API", relax_checks(runtime), check_timeout_s),
                    _bounded(
                        "RunPod",
                        runpod_checks(runtime, selftest_timeout_s=selftest_timeout_s),
                        check_timeout_s + selftest_timeout_s,
                    ),
                )
                checks += [check for group in groups for check in group]
    finally:
        if discord_task is not None:
            checks += await discord_task
    return checks


async def _bounded(what: str, checks: Awaitable[list[Check]], timeout_s: float) -> list[Check]:
    """Await a group of checks; a timeout or an unexpected error becomes one ✗ naming it."""
    try:
        return await asyncio.wait_for(checks, timeout_s)
    except TimeoutError:
        return [failed(what, f"no answer within {timeout_s:.0f} s", f"check that {what} is reachable from here")]
    except Exception as exc:
        log.debug("doctor: %s checks failed", what, exc_info=True)
        return [failed(what, f"the check itself failed: {type(exc).__name__}", "run with --log-level DEBUG")]


async def _open(stack: contextlib.AsyncExitStack, settings: BotSettings) -> tuple[Runtime | None, list[Check]]:
    """Open the runtime as the bot does (the embedded back ends when unset); a check when it cannot be opened.

    The link server binds WEB_PORT as the bot's does; when a running Peel holds that port, doctor serves its own on
    a free port instead (the links it checks then go through PUBLIC_BASE_URL, to the running bot, when set).
    """
    notes: list[Check] = []
    for attempt in (settings, settings.model_copy(update={"web_port": 0})):
        try:
            return await stack.enter_async_context(open_runtime(attempt)), notes
        except (LedgerDamagedError, LedgerTooNewError) as exc:
            return None, [failed("ledger", exc.user_message, "restore the ledger as the message says")]
        except StorageError as exc:
            return None, [failed("store", f"cannot open the store: {exc}", "check STORAGE_URL")]
        except OSError as exc:
            if attempt is not settings:
                raise
            notes.append(
                Check(
                    name="link server",
                    ok=True,
                    warning=True,
                    detail=f"WEB_PORT {settings.web_port} is taken ({exc.strerror}; a running Peel?): used another",
                )
            )
    raise AssertionError("unreachable")


async def ledger_checks(runtime: Runtime) -> list[Check]:
    """The ledger opened (it passed `quick_check` then), is at this code's schema and takes writes."""
    ledger = runtime.ledger
    path = runtime.settings.resolved_ledger_path
    version, known = await ledger.schema_version(), await ledger.known_schema_version()
    checks = [passed("ledger", f"{path}: sound, schema {version} of {known}")]
    try:
        await ledger.probe_write()
    except Exception as exc:  # noqa: BLE001 - any failure to write is the finding; its type names it
        checks.append(
            failed("ledger writable", f"{path}: {type(exc).__name__}", "give Peel's user write access to DATA_DIR")
        )
    else:
        checks.append(passed("ledger writable", f"{path} takes writes"))
    return checks


async def store_checks(runtime: Runtime) -> list[Check]:
    """The bot writes, reads back, links (and fetches the link) and deletes a small object."""
    store = runtime.backends.store
    key = f"{DOCTOR_PREFIX}/{secrets.token_hex(8)}/bot-only.txt"
    body = f"peel doctor {key}".encode()
    fix = "check STORAGE_URL and the STORAGE_* credentials (the bucket must exist and allow put/get/delete)"
    where = runtime.backends.store_url.split("?", 1)[0]
    try:
        await store.put(key, body, content_type="text/plain")
        read = await store.get_bytes(key)
    except StorageError as exc:
        return [failed("store", f"{where}: writing and reading back failed: {type(exc).__name__}", fix)]
    if read != body:
        return [failed("store", f"{where}: read back something else than was written", fix)]
    checks = [passed("store", f"{where}: write and read back")]
    try:
        checks.append(await _link_check(runtime, key, body))
    finally:
        try:
            await store.delete(key)
        except StorageError as exc:
            checks.append(failed("store delete", f"deleting {key} failed: {type(exc).__name__}", fix))
        else:
            checks.append(passed("store delete", f"deleted {key}"))
    return checks


async def _link_check(runtime: Runtime, key: str, body: bytes) -> Check:
    """A link to `key`, fetched as a user's browser would, serves its bytes."""
    fix = (
        "set PUBLIC_BASE_URL to the address where WEB_HOST:WEB_PORT is reachable"
        if runtime.link_server is not None
        else "allow GET on the bucket's presigned URLs (STORAGE_URL's endpoint must be reachable from users)"
    )
    try:
        url = await runtime.link(key, expires_s=300)
        async with runtime.backends.http.get(url) as resp:
            served = await resp.read() if resp.status == 200 else None
            status = resp.status
    except (aiohttp.ClientError, StorageError, TimeoutError, ValueError) as exc:
        return failed("store links", f"fetching a link failed: {type(exc).__name__}", fix)
    base = url.split("?", 1)[0].rsplit("/", 1)[0]
    if served != body:
        return failed("store links", f"a link under {base} answered HTTP {status}", fix)
    return passed("store links", f"a link under {base} serves the object")


async def relax_checks(runtime: Runtime) -> list[Check]:
    """The bot's own Gemini key reaches the Batch API: relax mode creates and watches batches from the bot."""
    name = "Gemini Batch API (relax mode)"
    if runtime.batches is None:
        return [
            Check(
                name=name,
                ok=True,
                warning=True,
                detail=f"relax mode is off: {RELAX_NEEDS_KEY}",
                fix=f"{RELAX_KEY_FIX} to offer relax batches (half price)",
            )
        ]
    try:
        await runtime.batches.check()
    except GeminiBatchError as exc:
        if exc.problem is GeminiProblem.REFUSED:
            return [
                failed(
                    name,
                    f"Gemini refused the bot's key (HTTP {exc.status})",
                    "set GEMINI_API_KEY in the bot's environment too (the workers' key): relax batches are created "
                    "and watched by the bot",
                )
            ]
        return [failed(name, f"no answer from the Batch API ({exc.problem})", "check GEMINI_BASE_URL and the network")]
    return [passed(name, "the bot's key can list batch jobs: relax batches can be created and watched")]


async def runpod_checks(runtime: Runtime, *, selftest_timeout_s: float) -> list[Check]:
    """The endpoint answers `/health` with this key, then a worker runs the self-test job."""
    settings = runtime.settings
    gateway = runtime.backends.gateway
    where = "the embedded endpoint" if settings.uses_local_runpod else gateway.endpoint_url
    try:
        health = await gateway.health()
    except RunpodAuthError as exc:
        return [
            failed(
                "RunPod API key",
                f"{where} refused RUNPOD_API_KEY (HTTP {exc.status_code})",
                "set RUNPOD_API_KEY to a key with access to this endpoint (RunPod console → Settings → API Keys)",
            )
        ]
    except RunpodRejectedError as exc:
        if exc.status_code == 404:
            return [
                failed(
                    "RunPod endpoint",
                    f"{where}: RUNPOD_ENDPOINT_ID unknown (HTTP 404)",
                    "set RUNPOD_ENDPOINT_ID to the id shown on the endpoint's page (RunPod console → Serverless)",
                )
            ]
        return [failed("RunPod endpoint", f"{where}: {exc}", "check RUNPOD_BASE_URL and RUNPOD_ENDPOINT_ID")]
    except RunpodUnavailableError as exc:
        return [
            failed(
                "RunPod endpoint",
                f"{where} unreachable: {exc}",
                "check RUNPOD_BASE_URL (unset for RunPod) and that this machine reaches it",
            )
        ]
    workers = ", ".join(f"{n} {state}" for state, n in sorted(health.workers.items()) if n) or "no workers yet"
    checks = [passed("RunPod endpoint", f"{where}: key accepted, /health readable ({workers})")]
    return checks + await selftest_checks(runtime, timeout_s=selftest_timeout_s)


async def selftest_checks(runtime: Runtime, *, timeout_s: float) -> list[Check]:
    """Run one self-test job on a worker and judge its answer; the objects both sides wrote are deleted after."""
    store = runtime.backends.store
    token = secrets.token_hex(8)
    bot_key, worker_key = f"{DOCTOR_PREFIX}/{token}/from-bot.txt", f"{DOCTOR_PREFIX}/{token}/from-worker.txt"
    bot_text, worker_text = f"written by the bot {token}", f"written by the worker {token}"
    test = SelfTestInput(
        read_key=bot_key, write_key=worker_key, write_text=worker_text, models=[runtime.settings.gemini_model]
    )
    try:
        await store.put(bot_key, bot_text.encode(), content_type="text/plain")
        job = await _run_selftest(runtime, test, timeout_s=timeout_s)
        if isinstance(job, Check):
            return [job]
        result = _selftest_result(job)
        if isinstance(result, Check):
            return [result]
        return [
            passed("worker contract", f"the worker speaks contract schema {result.schema_}"),
            *await _store_shared_checks(runtime, result, bot_text, worker_key, worker_text),
            *_gemini_checks(runtime.settings, result),
        ]
    finally:
        for key in (bot_key, worker_key):
            with contextlib.suppress(StorageError):
                await store.delete(key)


async def _run_selftest(runtime: Runtime, test: SelfTestInput, *, timeout_s: float) -> RemoteJob | Check:
    """Submit the self-test and wait (at most `timeout_s`) for it to end; a check when it does not."""
    gateway = runtime.backends.gateway
    started = time.monotonic()
    job = await gateway.run(test.to_payload(), execution_timeout_ms=60_000, ttl_ms=max(60_000, int(timeout_s * 2000)))
    while not job.status.is_final and time.monotonic() - started < timeout_s:
        await asyncio.sleep(SELFTEST_POLL_S)
        job = await gateway.status(job.id)
    if job.status.is_final:
        return job
    with contextlib.suppress(RunpodError):
        await gateway.cancel(job.id)
    if job.status is RemoteStatus.IN_QUEUE:
        return failed(
            "RunPod workers",
            f"no worker took the self-test job within {timeout_s:.0f} s",
            "check the endpoint's max workers (at least 1) and that its image starts (endpoint → Workers → logs)",
        )
    return failed(
        "worker self-test",
        f"a worker took the self-test job but did not finish it within {timeout_s:.0f} s",
        "read the worker's logs (endpoint → Workers); it may not reach the store or Gemini",
    )


OLD_WORKER_FIX = "rebuild and redeploy the worker image (worker/Dockerfile) from this version of Peel"


def _selftest_result(job: RemoteJob) -> SelfTestResult | Check:
    """Parse the worker's answer; an older worker refuses the input as BAD_INPUT or answers another shape."""
    if job.status is not RemoteStatus.COMPLETED:
        code, message = parse_top_level_error(job.error or "")
        if code is ErrorCode.BAD_INPUT:
            return failed(
                "worker contract", "the worker refused the self-test: it speaks an older contract", OLD_WORKER_FIX
            )
        return failed(
            "worker self-test",
            f"the job ended {job.status}: {(message or 'no error given')[:200]}",
            "read the worker's logs (endpoint → Workers)",
        )
    try:
        result = SelfTestResult.model_validate(job.raw.get("output"))
    except ValidationError:
        return failed(
            "worker contract", "the worker's answer is not a self-test result: an older contract", OLD_WORKER_FIX
        )
    if result.schema_ != SCHEMA_VERSION:
        return failed(
            "worker contract",
            f"the worker speaks contract schema {result.schema_}, the bot {SCHEMA_VERSION}",
            OLD_WORKER_FIX,
        )
    return result


async def _store_shared_checks(
    runtime: Runtime, result: SelfTestResult, bot_text: str, worker_key: str, worker_text: str
) -> list[Check]:
    shared_fix = "give the endpoint's workers the bot's STORAGE_URL and STORAGE_* credentials (an s3:// store)"
    if runtime.settings.resolved_storage_url.startswith("file://") and not runtime.settings.uses_local_runpod:
        shared_fix = "set STORAGE_URL=s3://bucket/prefix for the bot and the endpoint: workers cannot see local files"
    checks = []
    if result.read_text == bot_text:
        checks.append(passed("worker reads the store", "the worker read the object the bot wrote"))
    else:
        what = result.read_error or "it read something else than the bot wrote"
        checks.append(failed("worker reads the store", what, shared_fix))
    if not result.wrote:
        checks.append(failed("worker writes the store", result.write_error or "the worker could not write", shared_fix))
        return checks
    try:
        seen = (await runtime.backends.store.get_bytes(worker_key)).decode("utf-8", "replace")
    except StorageError as exc:
        seen = f"({type(exc).__name__})"
    if seen == worker_text:
        checks.append(passed("worker writes the store", "the bot read back the object the worker wrote"))
    else:
        checks.append(
            failed("worker writes the store", f"the bot cannot read {worker_key} the worker wrote", shared_fix)
        )
    return checks


def _gemini_checks(settings: BotSettings, result: SelfTestResult) -> list[Check]:
    key_is = (
        "the worker's GEMINI_API_KEY (the endpoint's environment)"
        if not settings.uses_local_runpod
        else "GEMINI_API_KEY"
    )
    fixes = {
        ModelProblem.KEY_REFUSED: f"{key_is} was refused: set a valid key (https://aistudio.google.com/apikey)",
        ModelProblem.UNKNOWN_MODEL: "set GEMINI_MODEL to a model this key can use (e.g. gemini-2.5-flash-image)",
        ModelProblem.UNREACHABLE: "check GEMINI_BASE_URL (unset for Google) and the worker's network",
        ModelProblem.OTHER: "read the worker's logs",
    }
    checks = []
    for model in result.models:
        name = f"Gemini {model.model}"
        if model.problem is ModelProblem.OK:
            checks.append(passed(name, "available to the worker's key"))
        else:
            what = {ModelProblem.KEY_REFUSED: "GEMINI_API_KEY refused"}.get(model.problem, str(model.problem))
            checks.append(failed(name, f"{what}: {model.detail}", fixes[model.problem]))
    return checks


def summary(checks: Sequence[Check]) -> tuple[int, int]:
    """Return how many checks passed and how many failed."""
    bad = sum(1 for c in checks if not c.ok)
    return len(checks) - bad, bad


__all__ = ["Check", "DiscordChecks", "failed", "passed", "run_doctor", "summary"]
