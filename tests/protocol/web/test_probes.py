"""The web server of a runtime answers `/healthz` and `/readyz`, with an S3 store too, and binds where it is told."""

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from pytest_aiohttp import AiohttpServer

from bot.app.runtime import Runtime, open_runtime
from bot.settings import BotSettings
from bot.web.readiness import OK
from tests.dockerfile import healthcheck_command
from tests.fakes.runpod import Answer, FakeRunpod
from tests.fakes.s3 import MotoS3

DOCKERFILE = (Path(__file__).resolve().parents[3] / "Dockerfile").read_text()
RUNPOD_KEY = "rp_secret_key_probe"


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeRunpod:
    fake = FakeRunpod("ep")
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("/v2"))
    return fake


@pytest.fixture
def settings_for(tmp_path: Path, fake: FakeRunpod) -> Callable[..., BotSettings]:
    def make(**overrides: Any) -> BotSettings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "runpod_endpoint_id": "ep",
            "runpod_api_key": SecretStr(RUNPOD_KEY),
            "runpod_api_base": fake.base_url,
            "gemini_api_key": SecretStr("g-key"),  # set: no embedded Gemini server starts (nothing calls it)
            "web_host": "127.0.0.1",
            "web_port": 0,
            "storage_url": "memory://",
            **overrides,
        }
        return BotSettings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings' init kwarg

    return make


@asynccontextmanager
async def runtime_on(settings: BotSettings) -> AsyncIterator[tuple[Runtime, str]]:
    async with open_runtime(settings) as runtime:
        assert runtime.link_server is not None
        yield runtime, runtime.link_server.base_url


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body


async def test_a_runtime_with_an_s3_store_serves_health_and_readiness_but_no_files(
    settings_for: Callable[..., BotSettings],
    moto_s3: MotoS3,
    s3_bucket: str,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in moto_s3.env().items():
        monkeypatch.setenv(name, value)
    settings = settings_for(storage_url=moto_s3.store_url(s3_bucket, "peel"))

    async with runtime_on(settings) as (_runtime, base):
        health = await _get(http, f"{base}/healthz")
        ready = await _get(http, f"{base}/readyz")
        files = await _get(http, f"{base}/files/outputs/x.png?exp=1&sig=x")

    assert health == (200, b"ok\n")
    assert ready == (200, {"ready": True, "checks": {"ledger": OK, "store": OK, "runpod": OK}})
    assert files[0] == 404  # S3 serves its own presigned links


async def test_readyz_is_503_and_names_runpod_refused_without_the_key_when_runpod_refuses_it(
    settings_for: Callable[..., BotSettings], fake: FakeRunpod, http: aiohttp.ClientSession
) -> None:
    fake.script("health", [Answer(401, {"error": f"bad key {RUNPOD_KEY}"})] * 3)

    async with runtime_on(settings_for()) as (_runtime, base):
        status, body = await _get(http, f"{base}/readyz")

    assert status == 503
    assert body == {"ready": False, "checks": {"ledger": OK, "store": OK, "runpod": "refused"}}


async def test_readyz_asks_runpod_once_however_often_it_is_probed(
    settings_for: Callable[..., BotSettings], fake: FakeRunpod, http: aiohttp.ClientSession
) -> None:
    async with runtime_on(settings_for()) as (_runtime, base):
        statuses = [(await _get(http, f"{base}/readyz"))[0] for _ in range(5)]

    assert statuses == [200] * 5
    assert fake.ops().count("health") == 1


async def test_readyz_reports_a_check_the_front_end_adds(
    settings_for: Callable[..., BotSettings], http: aiohttp.ClientSession
) -> None:
    connected = False

    async def discord() -> str:
        return OK if connected else "disconnected"

    async with runtime_on(settings_for()) as (runtime, base):
        runtime.readiness.add("discord", discord)
        before = await _get(http, f"{base}/readyz")
        connected = True
        after = await _get(http, f"{base}/readyz")

    assert before[0] == 503 and before[1]["checks"]["discord"] == "disconnected"
    assert after[0] == 200


async def test_the_web_server_listens_on_every_interface_and_links_name_loopback_when_bound_to_0_0_0_0(
    settings_for: Callable[..., BotSettings], http: aiohttp.ClientSession
) -> None:
    async with open_runtime(settings_for(web_host="0.0.0.0")) as runtime:
        assert runtime.link_server is not None
        base = runtime.link_server.base_url
        await runtime.backends.store.put("outputs/a.png", b"\x89PNG")
        link = await runtime.link("outputs/a.png")
        sockets = runtime.link_server.addresses

        status, _ = await _get(http, link)

    assert base.startswith("http://127.0.0.1:") and link.startswith(base + "/files/")
    assert status == 200
    assert {host for host, _port in sockets} == {"0.0.0.0"}


async def test_links_use_public_base_url_when_it_is_set(settings_for: Callable[..., BotSettings]) -> None:
    settings = settings_for(web_host="0.0.0.0", public_base_url="https://peel.example")

    async with open_runtime(settings) as runtime:
        await runtime.backends.store.put("outputs/a.png", b"\x89PNG")
        link = await runtime.link("outputs/a.png")

    assert link.startswith("https://peel.example/files/outputs/a.png?")


@pytest.mark.parametrize("up", [True, False])
async def test_the_bot_images_healthcheck_passes_only_while_healthz_answers(
    settings_for: Callable[..., BotSettings], up: bool
) -> None:
    command = healthcheck_command(DOCKERFILE)
    assert command[0] == "python"

    async with runtime_on(settings_for()) as (runtime, _base):
        assert runtime.link_server is not None
        port = runtime.link_server.addresses[0][1]
        if not up:
            await runtime.link_server.close()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *command[1:], env={"WEB_PORT": str(port)}, stderr=asyncio.subprocess.DEVNULL
        )
        status = await proc.wait()

    assert (status == 0) is up
