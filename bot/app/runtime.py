"""Everything a Peel process runs on, opened once: back ends, ledger, dispatcher and the web server.

The Discord bot and the headless CLI both open a `Runtime`; only what they put in front of it differs. The runtime
owns the readiness checks `/readyz` answers with: it registers those of the ledger, the store and RunPod, and the
front end adds its own (the bot's Discord connection).
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.app.embedded import Backends, open_backends
from bot.app.probes import ledger_check, runpod_check, store_check
from bot.core.deployment import relax_available, web_server_reaches_users
from bot.core.hosts import url_host
from bot.core.models import Job, JobId
from bot.core.outage import Outage
from bot.core.relax import RelaxPolicy
from bot.dispatch import Dispatcher, policy_from_settings
from bot.gemini.client import GenaiBatches
from bot.ledger import Ledger, backup_path
from bot.settings import BotSettings
from bot.web import LinkServer, StableLinks, link_for, make_app
from bot.web.gallery import GalleryMount
from bot.web.links import is_presigning
from bot.web.readiness import Readiness
from storage import LinkSigner

log = logging.getLogger(__name__)

WORKERS_READY_S = 15.0  # the most a headless run waits for the embedded workers to start


class StopRequestedError(Exception):
    """A headless run was asked to stop (SIGINT or SIGTERM); its job stays in the ledger and can be resumed."""


class WorkersUnreachableError(Exception):
    """A headless run gave up waiting through an outage; the job stays and can be resumed.

    `service` is what was unreachable: `runpod` (the image workers) or `gemini` (not answering the workers).
    """

    def __init__(self, since: datetime, reason: str, service: str = "runpod") -> None:
        super().__init__(f"{service} unreachable since {since.isoformat(timespec='seconds')}: {reason}")
        self.since = since
        self.reason = reason
        self.service = service


class WorkersMisconfiguredError(Exception):
    """RunPod refuses Peel's key or endpoint id: `detail` says what, `fix` what the operator should change."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(f"{detail}; fix: {fix}")
        self.detail = detail
        self.fix = fix


@dataclass(slots=True, kw_only=True)
class Runtime:
    """The opened parts of a Peel process; `link` and `lasting_link` make download URLs for any stored key.

    `link`'s URL expires; `lasting_link`'s does not when the web server can serve it. `stable_links` is set when
    the web server runs at an address users can open (see `open_runtime`).
    """

    settings: BotSettings
    backends: Backends
    ledger: Ledger
    dispatcher: Dispatcher
    signer: LinkSigner
    readiness: Readiness = field(default_factory=Readiness)
    link_server: LinkServer | None = None
    stable_links: StableLinks | None = None
    batches: GenaiBatches | None = None  # Gemini's Batch API with the bot's key (relax mode; the dispatcher's own)
    # The web server's gallery pages answer once `bot.app.gallery.GalleryService` attaches its port here.
    gallery_mount: GalleryMount = field(default_factory=GalleryMount)
    _delayed_told: Outage | None = None  # the outage a headless run has already said it is delayed by

    async def link(self, key: str, *, filename: str | None = None, expires_s: int | None = None) -> str:
        """Return a URL that serves `key` until it expires (signed link, or an S3 presigned URL)."""
        return await link_for(
            self.backends.store,
            key,
            expires_s=expires_s or self.settings.link_expiry_s,
            filename=filename,
            signer=self.signer,
        )

    async def lasting_link(self, key: str, *, filename: str | None = None) -> str:
        """Return a short URL that serves `key` for as long as it exists (`bot.web.stable`), else `link`'s URL.

        For links posted where they stay (a "Full size" button): a store URL expires, and a presigned one can be
        too long for Discord. Without `stable_links` (no web server users can open) this is `link`.
        """
        if self.stable_links is None:
            return await self.link(key, filename=filename)
        return self.stable_links.url(key, filename=filename)

    @property
    def link_lifetime_s(self) -> int | None:
        """How long a `lasting_link` works: None (as long as its object exists) with stable links, else the expiry."""
        return None if self.stable_links is not None else self.settings.link_expiry_s

    async def run_until_final(
        self,
        job_id: JobId,
        stop: asyncio.Event,
        *,
        on_tick: Callable[[Job], Awaitable[None]] | None = None,
        tick_s: float = 0.5,
        give_up_after_s: float | None = None,
        on_delayed: Callable[[Outage], None] | None = None,
    ) -> Job:
        """Run the dispatcher in this process (after `resume_after_restart`) until the job is final; return it.

        The headless front end's loop: the Discord bot runs the dispatcher for as long as it is up instead.

        Args:
            job_id: the job to see to its end.
            stop: set by SIGINT/SIGTERM.
            on_tick: awaited with the job about every `tick_s` (the dispatcher runs on meanwhile, so it may ask
                its user something); what it raises ends the wait, the dispatcher stopped as on any exit.
            tick_s: how often the job is looked at.
            give_up_after_s: how long to wait through an outage of RunPod or Gemini before giving up (None: as the
                bot does).
            on_delayed: called once when an outage of RunPod or Gemini begins to delay the job.

        Raises:
            StopRequestedError: `stop` was set first; the dispatcher loop is cancelled and the job left as it is.
            WorkersUnreachableError: RunPod or Gemini stayed unreachable `give_up_after_s`; the job is left as it is.
            WorkersMisconfiguredError: RunPod refuses the key or endpoint id; nothing can run until it is fixed.
        """
        dispatcher = self.dispatcher
        report = await dispatcher.resume_after_restart()
        if report.reattached or report.reconciled:
            log.info("resumed %d chunk(s) in flight, %d stranded", report.reattached, report.reconciled)
        loop_task = asyncio.create_task(dispatcher.run_forever(resume=False), name="peel-cli-dispatcher")
        try:
            while True:
                job = await self.ledger.get_job(job_id)
                if job is None:
                    raise RuntimeError(f"job {job_id} vanished from the ledger")
                if on_tick is not None:
                    await on_tick(job)
                if (refusal := dispatcher.runpod_refusal) is not None:  # before a job failed by it is returned
                    raise WorkersMisconfiguredError(refusal.detail, refusal.fix)
                if job.status.is_final:
                    return job
                self._check_outage(give_up_after_s, on_delayed)
                if loop_task.done():
                    loop_task.result()  # run_forever only ends by raising
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tick_s)
                if stop.is_set():
                    raise StopRequestedError
        finally:
            await dispatcher.stop(loop_task)

    def _check_outage(self, give_up_after_s: float | None, on_delayed: Callable[[Outage], None] | None) -> None:
        """Tell of an outage (RunPod's or Gemini's) once, and raise when it lasts longer than a headless run waits."""
        outage = self.dispatcher.outage
        if outage is None:
            self._delayed_told = None
            return
        if on_delayed is not None and self._delayed_told != outage:
            self._delayed_told = outage
            on_delayed(outage)
        if give_up_after_s is not None and (datetime.now(UTC) - outage.since).total_seconds() >= give_up_after_s:
            raise WorkersUnreachableError(outage.since, outage.reason, outage.service)

    async def workers_ready(self, stop: asyncio.Event) -> None:
        """Wait (at most `WORKERS_READY_S`) until every embedded worker asks for work, before a batch's first chunks.

        The workers start while the ZIP is read, so this is usually no wait. Chunks handed out before they are all
        up would crowd onto the first ones (the endpoint spreads jobs over the workers that ask), and each worker is
        one process: crowded, it runs slower than the budget allows. A worker that is not up in time is not waited
        for.

        Raises:
            StopRequestedError: `stop` was set first.
        """
        endpoint = self.backends.endpoint
        if endpoint is None:
            return
        ready = asyncio.create_task(endpoint.wait_ready(timeout_s=WORKERS_READY_S))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((ready, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            ready.cancel()
        if stop.is_set():
            raise StopRequestedError
        if not ready.cancelled() and isinstance(ready.exception(), TimeoutError):
            log.warning("not every embedded worker is up after %.0f s; starting with those that are", WORKERS_READY_S)


async def _link_secret(settings: BotSettings) -> bytes:
    """Return `LINK_SECRET`, else a random secret kept in the data directory (so links survive restarts)."""
    if settings.link_secret is not None:
        return settings.link_secret.get_secret_value().encode()
    path = settings.data_dir / "link_secret"

    def load_or_make() -> bytes:
        if path.exists():
            return path.read_bytes().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(32).encode()
        path.touch(mode=0o600)
        path.write_bytes(secret)
        return secret

    return await asyncio.to_thread(load_or_make)


@contextlib.asynccontextmanager
async def open_runtime(
    settings: BotSettings, *, worker_env: Mapping[str, str] | None = None, serve_links: bool = True
) -> AsyncIterator[Runtime]:
    """Open the ledger (checked, then backed up beside itself), the back ends and the dispatcher, and the web server.

    The web server (`WEB_HOST:WEB_PORT`) answers `/healthz` and `/readyz`, and serves signed links when the store
    needs it (file and memory stores; S3 serves its own presigned links).

    Args:
        settings: the process's settings.
        worker_env: extra environment for embedded workers and the local Gemini server.
        serve_links: start the web server (the CLI writes files and needs none).
    """
    secret = await _link_secret(settings)
    ledger_path = settings.resolved_ledger_path
    await asyncio.to_thread(Path(ledger_path).parent.mkdir, parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        # The ledger first: a damaged one stops the process before any worker or server starts.
        ledger = await Ledger.open(ledger_path)
        stack.push_async_callback(ledger.close)
        await ledger.back_up(backup_path(ledger_path))  # it has just passed its check: a known-good copy
        backends = await stack.enter_async_context(open_backends(settings, worker_env=worker_env))
        readiness = Readiness()
        readiness.add("ledger", ledger_check(ledger))
        readiness.add("store", store_check(backends.store))
        readiness.add("runpod", runpod_check(backends.gateway))
        base_url = settings.public_base_url or f"http://{url_host(settings.web_host)}:{settings.web_port}"
        link_server: LinkServer | None = None
        gallery_mount = GalleryMount()
        if serve_links:
            # Verifying a link needs only the secret; the base URL is known once the server has bound its port.
            app = make_app(
                backends.store,
                LinkSigner(secret, base_url),
                readiness=readiness,
                serve_files=not is_presigning(backends.store),
                gallery=gallery_mount,
            )
            link_server = await stack.enter_async_context(
                LinkServer(app, host=settings.web_host, port=settings.web_port)
            )
            base_url = settings.public_base_url or link_server.base_url
        # Stable links only where users can open the web server (else an S3 store's presigned URLs stay).
        reached = web_server_reaches_users(settings.deployment_facts())
        # Relax batches need the bot's own key to the workers' Gemini (`relax_available`); without it none is made.
        batches = (
            GenaiBatches(backends.http, api_key=backends.gemini_key, base_url=backends.gemini_base_url)
            if relax_available(settings.deployment_facts())
            else None
        )
        dispatcher = Dispatcher(
            ledger,
            backends.gateway,
            backends.store,
            policy=policy_from_settings(
                gemini_concurrency=settings.gemini_concurrency,
                max_running_per_user=settings.max_running_per_user,
                max_waiting_per_user=settings.max_waiting_per_user,
                item_max_attempts=settings.item_max_attempts,
                batch_chunk_s=settings.batch_chunk_s,
                outage_fail_after_s=settings.outage_fail_after_s,
                outage_fail_batch_after_s=settings.outage_fail_batch_after_s,
                relax=RelaxPolicy(
                    part_items=settings.relax_part_items,
                    parts_per_job=settings.relax_parts_per_job,
                    max_parts=settings.relax_max_parts,
                    poll=timedelta(seconds=settings.relax_poll_s),
                ),
                runpod_price_per_s=settings.runpod_price_per_s,
            ),
            poll_interval_s=settings.poll_interval_s,
            batches=batches,
        )
        yield Runtime(
            settings=settings,
            backends=backends,
            ledger=ledger,
            dispatcher=dispatcher,
            batches=batches,
            signer=LinkSigner(secret, base_url),
            readiness=readiness,
            link_server=link_server,
            gallery_mount=gallery_mount,
            stable_links=StableLinks(secret, base_url) if link_server is not None and reached else None,
        )
