"""The readiness registry: codes per check, concurrency, timeouts, no free text; and the cached check."""

import asyncio

import pytest

from bot.web.readiness import ERROR, OK, TIMEOUT, Readiness, cached


def answer(code: str):
    async def check() -> str:
        return code

    return check


async def test_report_is_ready_only_when_every_check_answers_ok() -> None:
    readiness = Readiness()
    readiness.add("ledger", answer(OK))
    readiness.add("store", answer(OK))
    assert (await readiness.report()).ready

    readiness.add("runpod", answer("unreachable"))
    report = await readiness.report()

    assert not report.ready
    assert report.to_json() == {"ready": False, "checks": {"ledger": "ok", "store": "ok", "runpod": "unreachable"}}


async def test_report_with_no_checks_is_not_ready() -> None:
    assert not (await Readiness().report()).ready


async def test_an_exception_is_the_code_error_and_its_text_is_never_shown() -> None:
    async def boom() -> str:
        raise RuntimeError("password=hunter2 at db.internal:5432")

    readiness = Readiness()
    readiness.add("ledger", boom)

    report = await readiness.report()

    assert report.checks == {"ledger": ERROR}
    assert "hunter2" not in str(report.to_json())


async def test_a_check_answering_free_text_is_shown_as_error() -> None:
    readiness = Readiness()
    readiness.add("store", answer("Access Denied for key AKIA123"))

    assert (await readiness.report()).checks == {"store": ERROR}


async def test_a_hung_check_times_out_while_the_others_answer() -> None:
    async def hang() -> str:
        await asyncio.Event().wait()
        return OK

    readiness = Readiness(timeout_s=0.05)
    readiness.add("runpod", hang)
    readiness.add("ledger", answer(OK))

    assert (await readiness.report()).checks == {"runpod": TIMEOUT, "ledger": OK}


async def test_checks_run_at_the_same_time() -> None:
    # Each check waits for the other to have started: run one after the other, both would time out.
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def waits_for(me: str, other: str):
        async def check() -> str:
            started[me].set()
            await started[other].wait()
            return OK

        return check

    readiness = Readiness(timeout_s=5)
    readiness.add("a", waits_for("a", "b"))
    readiness.add("b", waits_for("b", "a"))

    assert (await readiness.report()).checks == {"a": OK, "b": OK}


@pytest.mark.parametrize("name", ["Ledger", "run pod", "", "x" * 40])
def test_a_check_needs_a_short_lowercase_name(name: str) -> None:
    with pytest.raises(ValueError, match="short lowercase name"):
        Readiness().add(name, answer(OK))


async def test_cached_asks_once_per_ttl_and_again_after_it() -> None:
    calls = 0

    async def check() -> str:
        nonlocal calls
        calls += 1
        return OK

    now = [100.0]
    probe = cached(check, ttl_s=5.0, clock=lambda: now[0])

    assert [await probe() for _ in range(3)] == [OK] * 3
    assert calls == 1
    now[0] += 5.0
    await probe()
    assert calls == 2


async def test_cached_shares_one_run_among_concurrent_probes() -> None:
    calls = 0
    release = asyncio.Event()

    async def check() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "refused"

    probe = cached(check, ttl_s=5.0)
    waiting = [asyncio.ensure_future(probe()) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()

    assert await asyncio.gather(*waiting) == ["refused"] * 5
    assert calls == 1


async def test_cached_does_not_keep_a_failure_and_survives_a_probe_timeout() -> None:
    answers: list[str | Exception] = [RuntimeError("down"), OK]
    release = asyncio.Event()

    async def check() -> str:
        await release.wait()
        result = answers.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    readiness = Readiness(timeout_s=0.05)
    readiness.add("runpod", cached(check, ttl_s=60.0))

    assert (await readiness.report()).checks == {"runpod": TIMEOUT}  # the probe gave up; the run goes on
    release.set()
    await asyncio.sleep(0)
    # The run the timed-out probe left raised: nothing is cached, so the next probe asks again.
    assert (await readiness.report()).checks == {"runpod": OK}
    assert answers == []
