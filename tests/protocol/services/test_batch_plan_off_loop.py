"""Planning a batch decides its items in a worker thread: 10,000 items' prompts held the event loop ~0.5 s.

While it held the loop no interaction was acknowledged (`bench/interactive_latency.py`: a /batch of 10,000 images
planned beside /imagine commands took their ack p99 from 15 ms to 315 ms, one to 716 ms).
"""

import threading
from pathlib import Path
from typing import Any

import pytest

from bot.app.batches import BatchService
from bot.app.runtime import Runtime
from bot.core.prompt_table import assign_prompts
from tests.protocol.services.test_batch_prompts import images, request, write_zip


async def test_planning_a_zip_decides_its_items_off_the_event_loop(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []

    def spied(**kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return assign_prompts(**kwargs)

    monkeypatch.setattr("bot.app.batches.assign_prompts", spied)  # where the planner looks it up
    path = await write_zip(tmp_path / "in.zip", images(3))
    plan = await BatchService(runtime).plan_from_file(path, request("a fox --ar 3:2"), source="in.zip")
    assert len(plan.items) == 3
    assert threads and threading.get_ident() not in threads
