"""Wire shapes of RunPod Serverless, as `TypedDict`s: the REST API v2 (client face) and the worker protocol.

The worker protocol is what the runpod SDK's worker runtime (1.12) speaks to the platform; RunPod does not document
it, so `local.runpod` implements it as observed in the SDK's worker runtime (`runpod.serverless.modules.rp_job`,
`rp_http`, `rp_ping`) and a test pins it against the installed SDK.
"""

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

# ---------------------------------------------------------------------------------------------------- client face


class Policy(TypedDict, total=False):
    """`policy` of a `/run` request; times in milliseconds."""

    executionTimeout: int
    ttl: int
    lowPriority: bool


class RunRequest(TypedDict):
    """Body of `POST /v2/{endpoint}/run`."""

    input: dict[str, Any]
    policy: NotRequired[Policy]
    webhook: NotRequired[str]


class StatusBody(TypedDict, total=False):
    """Body of `/run`, `/status/{id}`, `/cancel/{id}` answers."""

    id: str
    status: str
    delayTime: int
    executionTime: int
    output: Any
    error: Any
    retries: int
    workerId: str


class HealthBody(TypedDict):
    """Body of `GET /v2/{endpoint}/health`."""

    jobs: dict[str, int]
    workers: dict[str, int]


class PurgeBody(TypedDict):
    """Body of `POST /v2/{endpoint}/purge-queue`."""

    removed: int
    status: str


class StreamBody(TypedDict):
    """Body of `GET /v2/{endpoint}/stream/{id}`."""

    status: str
    stream: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------------- client limits
#
# RunPod's documented limits of the client face. Sources (cited by `local.runpod`, which enforces them, and by
# `bot.runpod.pacing`, which keeps the bot under them):
# - rate limits, payload limits, retention: https://docs.runpod.io/serverless/endpoints/send-requests
#   ("Operation overview" / rate-limit table) and https://docs.runpod.io/serverless/references/operations
# - policy ranges: https://docs.runpod.io/serverless/endpoints/send-requests#execution-policies ("executionTimeout:
#   must be > 5000 ms"; "ttl: must be >= 10000 ms, max 1 week") and
#   https://docs.runpod.io/serverless/endpoints/endpoint-configurations (execution timeout and TTL "maximum is 7 days")
# - `/runsync?wait=`: https://docs.runpod.io/serverless/endpoints/operation-reference ("1000-300000 ms", 90 s default)


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """One route family's documented limit: `requests` per `window_s` seconds, and at most `concurrent` at once."""

    requests: int
    window_s: float
    concurrent: int | None


# Route family -> limit. `/status`, `/status-sync` and `/stream` share one family. `/health` and `/retry` have no
# documented limit.
RUNPOD_ROUTE_LIMITS: dict[str, RouteLimit] = {
    "run": RouteLimit(1000, 10.0, 200),
    "runsync": RouteLimit(2000, 10.0, 400),
    "status": RouteLimit(2000, 10.0, 400),
    "cancel": RouteLimit(100, 10.0, 20),
    "purge-queue": RouteLimit(2, 10.0, None),
}

# Request-body limits in bytes ("Payload Limit: 10 MB" on /run, "20 MB" on /runsync); decimal megabytes, the smaller
# reading, so the stand-in is never looser than RunPod.
RUNPOD_BODY_LIMITS: dict[str, int] = {"run": 10_000_000, "runsync": 20_000_000}

# Queue limit of `/run` and `/runsync`: "Requests will receive a 429 (Too Many Requests) status if: Queue size exceeds
# 50 jobs AND Queue size exceeds endpoint.WorkersMax * 500" (https://docs.runpod.io/serverless/references/operations,
# "Queue Limits"). Read the stricter way: a new job is refused once the queue holds this many.
QUEUE_LIMIT_FLOOR = 50
QUEUE_LIMIT_PER_MAX_WORKER = 500


def queue_limit(workers_max: int) -> int:
    """Return how many jobs an endpoint of `workers_max` workers may hold queued before RunPod answers 429."""
    return max(QUEUE_LIMIT_FLOOR, QUEUE_LIMIT_PER_MAX_WORKER * workers_max)


# `policy` ranges in ms: (lowest accepted, highest accepted).
EXECUTION_TIMEOUT_RANGE_MS = (5001, 7 * 24 * 3600 * 1000)
TTL_RANGE_MS = (10_000, 7 * 24 * 3600 * 1000)
RUNSYNC_WAIT_RANGE_MS = (1000, 300_000)


def route_family(path: str) -> str | None:
    """Return the rate-limit family of a client-face path (`/run`, `/status/{id}`, …), None when RunPod sets none."""
    head = path.strip("/").split("/", 1)[0]
    if head in ("status", "status-sync", "stream"):
        return "status"
    return head if head in RUNPOD_ROUTE_LIMITS else None


# ---------------------------------------------------------------------------------------------------- worker face


class WorkerJob(TypedDict):
    """One job as `job-take` (a single object) or `job-take-batch` (a list) hands it to a worker."""

    id: str
    input: dict[str, Any]


class JobDoneBody(TypedDict, total=False):
    """Body of `POST …/job-done/{worker}/{job}`: JSON text sent as `application/x-www-form-urlencoded`.

    `status == "IN_PROGRESS"` marks a `progress_update`; a final result has no `status`. `stopPod` asks the platform
    to recycle the worker (`refresh_worker`).
    """

    status: str
    output: Any
    error: Any
    stopPod: bool


class StopSignals(TypedDict):
    """Body of `GET …/job-stop/{worker}` when there is something to stop (else 204)."""

    jobsToStop: list[str]
