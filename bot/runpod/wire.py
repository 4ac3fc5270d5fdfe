"""Wire shapes of RunPod Serverless, as `TypedDict`s: the REST API v2 (client face) and the worker protocol.

The worker protocol is what the runpod SDK's worker runtime (1.12) speaks to the platform; RunPod does not document
it, so `local.runpod` implements it as observed in the SDK's worker runtime (`runpod.serverless.modules.rp_job`,
`rp_http`, `rp_ping`) and a test pins it against the installed SDK.
"""

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
