"""Errors of the RunPod adapters.

```
RunpodError
├── RunpodUnavailableError      transient: 429 or 5xx after the retries, connection errors, timeouts
└── RunpodRejectedError         permanent: RunPod refused the request (4xx other than a 404 status)
    ├── RunpodAuthError         401/403: the API key is wrong or lacks access to the endpoint
    └── RunpodProtocolError     the answer could not be understood (not JSON, unknown status, missing id)
```
"""

from typing import ClassVar


class RunpodError(Exception):
    """Base of every RunPod adapter error."""

    transient: ClassVar[bool] = False


class RunpodUnavailableError(RunpodError):
    """RunPod did not answer usefully; trying again later may work."""

    transient = True

    def __init__(self, message: str, *, status_code: int | None = None, maybe_submitted: bool = False) -> None:
        super().__init__(message)
        self.status_code = status_code
        # True when a `/run` request may have reached RunPod before the failure (a timeout after sending), so a job
        # may exist; deterministic output keys make a resubmission harmless.
        self.maybe_submitted = maybe_submitted


class RunpodRejectedError(RunpodError):
    """RunPod refused the request; repeating it unchanged will fail again."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RunpodAuthError(RunpodRejectedError):
    """The API key was refused."""


class RunpodProtocolError(RunpodRejectedError):
    """RunPod's answer did not have the expected shape."""
