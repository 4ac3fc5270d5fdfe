"""Run the local RunPod endpoint alone: `python -m local.runpod --port 8790 --workers 2`."""

import argparse
import asyncio
import logging
import os
import shlex
import signal
from collections.abc import Sequence

from local.runpod.endpoint import LocalEndpoint
from local.runpod.processes import DEFAULT_WORKER_COMMAND


def main(argv: Sequence[str] | None = None) -> None:
    """Run the endpoint standalone until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m local.runpod", description="A local RunPod-compatible Serverless endpoint."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--endpoint-id", default="local")
    parser.add_argument("--api-key", default=os.environ.get("LOCAL_RUNPOD_API_KEY"))
    parser.add_argument("--worker-command", default=None, help="the worker's command line (default: python -m worker)")
    parser.add_argument("--retention-s", type=float, default=30 * 60)
    parser.add_argument(
        "--max-queue",
        type=int,
        default=None,
        help="jobs the queue holds before /run answers 429 (default RunPod's rule: max(50, 500 x workers))",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = shlex.split(args.worker_command) if args.worker_command else DEFAULT_WORKER_COMMAND
    asyncio.run(
        _serve(
            LocalEndpoint(
                workers=args.workers,
                worker_command=command,
                host=args.host,
                port=args.port,
                endpoint_id=args.endpoint_id,
                api_key=args.api_key,
                retention_s=args.retention_s,
                max_queue=args.max_queue,
            )
        )
    )


async def _serve(endpoint: LocalEndpoint) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with endpoint:
        # CLI output: where to point RunpodHttpGateway (the key is this local endpoint's own, not a RunPod account's).
        print(  # noqa: T201
            f"local RunPod endpoint: base_url={endpoint.base_url} endpoint_id={endpoint.endpoint_id} "
            f"api_key={endpoint.api_key}",
            flush=True,
        )
        await stop.wait()


if __name__ == "__main__":
    main()
