"""When a supervised process that exited is started again: exponential backoff, capped, reset once it stayed up."""

from dataclasses import dataclass


@dataclass(slots=True, kw_only=True)
class RestartBackoff:
    """The delays before each restart of one process (the embedded Gemini server, a local RunPod worker).

    A process that keeps dying soon after it starts waits twice as long each time, up to `cap_s`; one that stayed
    up `stable_s` or longer has recovered, so its next restart waits only `first_s` again.
    """

    first_s: float = 0.5
    cap_s: float = 30.0
    stable_s: float = 30.0
    delay_s: float | None = None  # the last delay given; None before the first restart

    def after_exit(self, up_s: float) -> float:
        """Return how long to wait before starting again a process that exited after running `up_s` seconds."""
        if self.delay_s is None or up_s >= self.stable_s:
            self.delay_s = self.first_s
        else:
            self.delay_s = min(self.cap_s, self.delay_s * 2)
        return self.delay_s
