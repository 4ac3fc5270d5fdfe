"""A tiny RunPod worker for testing the local endpoint's mechanics through the real runpod SDK runtime.

Run as `python -m tests.fakes.runpod_handlers` by `LocalEndpoint(worker_command=...)`. The job input picks the
behaviour: `steps` progress updates `delay_s` apart, then `mode`:
`echo` (a result manifest), `error` (a returned error), `raise`, `exit` (the process dies mid-job),
`die_once` (dies the first time a marker file is absent), `refresh` (asks for a fresh worker).
"""

import asyncio
import os
from pathlib import Path
from typing import Any

import runpod


async def handler(job: dict[str, Any]) -> dict[str, Any]:
    """Behave as the job's input says."""
    spec = job["input"]
    steps = int(spec.get("steps", 0))
    delay_s = float(spec.get("delay_s", 0.0))
    me = {"worker": os.environ.get("RUNPOD_POD_ID"), "pid": os.getpid()}
    try:
        for done in range(steps):
            runpod.serverless.progress_update(job, {"type": "progress", "done": done, "total": steps, **me})
            await asyncio.sleep(delay_s)
    except asyncio.CancelledError:
        if spec.get("marker_dir"):
            _write(Path(spec["marker_dir"]) / f"{job['id']}.stopped", str(me["worker"]))
        raise
    mode = spec.get("mode", "echo")
    if mode == "error":
        return {"error": "BAD_INPUT: asked to fail", "type": "result", "ok": 0, "failed": 1, **me}
    if mode == "raise":
        raise RuntimeError("boom from the test handler")
    if mode == "exit":
        os._exit(3)
    if mode == "die_once":
        marker = Path(spec["marker"])
        if not await asyncio.to_thread(marker.exists):
            await asyncio.to_thread(marker.write_text, str(me["worker"]))
            os._exit(3)
    result: dict[str, Any] = {"type": "result", "ok": 1, "failed": 0, "echo": spec.get("echo"), **me}
    result["env"] = {k: os.environ.get(k) for k in spec.get("env_keys", [])}
    if mode == "refresh":
        result["refresh_worker"] = True
    return result


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _concurrency(current: int) -> int:
    return int(os.environ.get("TEST_HANDLER_CONCURRENCY", "1"))


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler, "concurrency_modifier": _concurrency})
