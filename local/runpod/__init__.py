"""A local RunPod-compatible Serverless endpoint that runs the real worker as subprocesses."""

from local.runpod.endpoint import LocalEndpoint
from local.runpod.jobs import WorkerInfo

__all__ = ["LocalEndpoint", "WorkerInfo"]
