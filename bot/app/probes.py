"""The readiness checks of the resources a runtime opens: ledger, store, RunPod and the Discord connection.

Each check answers `ok` or a short fixed code (see `bot.web.readiness`); `/readyz` runs them together.
"""

from collections.abc import Callable

from bot.ledger import Ledger
from bot.runpod.client import RunpodHttpGateway
from bot.runpod.errors import RunpodAuthError, RunpodRejectedError, RunpodUnavailableError
from bot.web.readiness import OK, Check, cached
from storage import Store
from storage.errors import StorageUnavailableError

# The key the store check asks about. It need not exist: a store that answers "no such object" answers.
PROBE_KEY = "health/readiness-probe"
# RunPod is asked at most this often however often `/readyz` is probed (its /health is rate limited per key).
RUNPOD_PROBE_TTL_S = 5.0


def ledger_check(ledger: Ledger) -> Check:
    """The ledger answers a trivial query."""

    async def check() -> str:
        await ledger.ping()
        return OK

    return check


def store_check(store: Store) -> Check:
    """The store answers a lookup of one small key."""

    async def check() -> str:
        try:
            await store.exists(PROBE_KEY)
        except StorageUnavailableError:
            return "unavailable"
        return OK

    return check


def runpod_check(gateway: RunpodHttpGateway, *, ttl_s: float = RUNPOD_PROBE_TTL_S) -> Check:
    """RunPod's `/health` answers for the endpoint with the key (cached for `ttl_s`)."""

    async def check() -> str:
        try:
            await gateway.health()
        except RunpodAuthError:
            return "refused"
        except RunpodUnavailableError:
            return "unreachable"
        except RunpodRejectedError:
            return "rejected"
        return OK

    return cached(check, ttl_s=ttl_s)


def discord_check(connected: Callable[[], bool]) -> Check:
    """The bot holds an open gateway connection to Discord."""

    async def check() -> str:
        return OK if connected() else "disconnected"

    return check


__all__ = ["PROBE_KEY", "RUNPOD_PROBE_TTL_S", "discord_check", "ledger_check", "runpod_check", "store_check"]
