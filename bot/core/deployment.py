"""Configurations that can never work, found before anything starts.

`python -m bot`, its CLI and `python -m bot doctor` ask `impossible_configurations` about the settings and stop
(or report a ✗) on each problem, naming the setting and the fix, before connecting to Discord or starting a
worker: a misconfigured deployment should say so at once, not leave users looking at "Waiting to start".

Pure: it sees the settings as plain values (`DeploymentFacts`), so each rule is a unit test away.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

STORE_SCHEMES = ("file", "memory", "s3")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentFacts:
    """What the rules need to know of the settings.

    Attributes:
        discord_configured: a real `DISCORD_TOKEN` is set (not the local playground).
        runpod_configured: a RunPod endpoint is set (`RUNPOD_ENDPOINT_ID`), not the embedded one.
        runpod_base_url: `RUNPOD_BASE_URL`.
        storage_url: the store URL in use (`STORAGE_URL`, or the file store under the data directory).
        storage_shared_with_workers: `STORAGE_SHARED_WITH_WORKERS`: the endpoint's workers run on this machine and
            see its files (a RunPod-compatible endpoint on the same host).
        public_base_url: `PUBLIC_BASE_URL`, or None.
        gemini_base_url: `GEMINI_BASE_URL`, or None.
        export_destinations: `EXPORT_DESTINATIONS`, name → store URL.
        serves_users: the process answers Discord users (the bot), whose links must open from their browsers;
            the headless CLI writes files instead.
        gemini_configured: the bot has its own `GEMINI_API_KEY` (else the embedded Gemini server answers it).
        relax_by_default: `BATCH_DEFAULT_SPEED=relax` or `RELAX_GUILDS` names a server.
    """

    discord_configured: bool
    runpod_configured: bool
    runpod_base_url: str
    storage_url: str
    storage_shared_with_workers: bool = False
    public_base_url: str | None = None
    gemini_base_url: str | None = None
    export_destinations: Mapping[str, str] = field(default_factory=dict)
    serves_users: bool = True
    gemini_configured: bool = False
    relax_by_default: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigProblem:
    """One configuration that cannot work: the setting at fault, what goes wrong and how to fix it."""

    setting: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.problem}; {self.fix}"


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def impossible_configurations(facts: DeploymentFacts) -> list[ConfigProblem]:
    """Return every problem that stops this configuration from working, in the order the settings are read."""
    problems: list[ConfigProblem] = []
    problems += _url_problems(facts)
    problems += _store_problems(facts)
    problems += _link_problems(facts)
    problems += _relax_problems(facts)
    return problems


RELAX_NEEDS_KEY = (
    "relax batches are created and watched by the bot with its own Gemini key (the workers only move the bytes), "
    "and with a RunPod endpoint the bot has none"
)
RELAX_KEY_FIX = "set GEMINI_API_KEY in the bot's environment too (the key the workers use)"


def relax_available(facts: DeploymentFacts) -> bool:
    """Tell whether relax batches can run: the bot reaches the same Gemini as the workers with its own key.

    With the embedded endpoint both use the embedded (or configured) Gemini; with a RunPod endpoint the workers
    use their own `GEMINI_API_KEY`, and the bot needs one too to create, watch and cancel their batches.
    """
    return facts.gemini_configured or not facts.runpod_configured


def _relax_problems(facts: DeploymentFacts) -> list[ConfigProblem]:
    if relax_available(facts) or not facts.relax_by_default:
        return []
    return [
        ConfigProblem(
            setting="BATCH_DEFAULT_SPEED / RELAX_GUILDS",
            problem=f"batches default to relax, but {RELAX_NEEDS_KEY}",
            fix=f"{RELAX_KEY_FIX}, or leave BATCH_DEFAULT_SPEED=fast and RELAX_GUILDS empty",
        )
    ]


def _url_problems(facts: DeploymentFacts) -> list[ConfigProblem]:
    # (setting, its value when it is in use, the fix when it is not a URL Peel can call)
    urls = (
        (
            "RUNPOD_BASE_URL",
            facts.runpod_base_url if facts.runpod_configured else None,
            "leave it unset for RunPod (https://api.runpod.ai/v2) or give a full http(s) URL",
        ),
        (
            "GEMINI_BASE_URL",
            facts.gemini_base_url,
            "leave it unset for Google's Gemini API or give a full http(s) URL",
        ),
        (
            "PUBLIC_BASE_URL",
            facts.public_base_url,
            "set it to the address users open the link server at, e.g. https://peel.example.com",
        ),
    )
    return [
        ConfigProblem(setting=setting, problem=f"{url!r} is not an absolute http(s) URL", fix=fix)
        for setting, url, fix in urls
        if url is not None and not _is_http_url(url)
    ]


def _store_problems(facts: DeploymentFacts) -> list[ConfigProblem]:
    problems = []
    scheme = _scheme(facts.storage_url)
    if scheme not in STORE_SCHEMES:
        problems.append(
            ConfigProblem(
                setting="STORAGE_URL",
                problem=f"unsupported store URL scheme {scheme!r}",
                fix="use s3://bucket/prefix (or file://PATH with the embedded endpoint)",
            )
        )
    elif scheme == "memory":
        # The embedded endpoint's workers are subprocesses too: none of them can see this process's memory.
        problems.append(
            ConfigProblem(
                setting="STORAGE_URL",
                problem="a memory:// store lives in the bot's process, where no worker can read or write it",
                fix="use s3://bucket/prefix, or leave STORAGE_URL unset for the file store under DATA_DIR",
            )
        )
    elif scheme == "file" and facts.runpod_configured and not facts.storage_shared_with_workers:
        problems.append(
            ConfigProblem(
                setting="STORAGE_URL",
                problem="a file store is on this machine's disk, which RunPod's workers cannot read or write",
                fix="set STORAGE_URL=s3://bucket/prefix (S3, R2 or MinIO) for the endpoint and the bot alike"
                " (or STORAGE_SHARED_WITH_WORKERS=true when the endpoint's workers run on this machine)",
            )
        )
    for name, url in sorted(facts.export_destinations.items()):
        if _scheme(url) not in ("file", "s3"):
            problems.append(
                ConfigProblem(
                    setting="EXPORT_DESTINATIONS",
                    problem=f"destination {name!r} has an unsupported store URL",
                    fix="give each destination an s3://bucket/prefix or file://PATH URL",
                )
            )
    return problems


def web_server_reaches_users(facts: DeploymentFacts) -> bool:
    """Tell whether the people Peel posts links to can open its web server, so its stable links work for them.

    They can at `PUBLIC_BASE_URL`, and on this machine with the local playground. A file or memory store's links
    already point at the server (real Discord with one needs `PUBLIC_BASE_URL`, see `_link_problems`). An S3 store
    with real Discord and no `PUBLIC_BASE_URL` is valid, its links being presigned URLs on the bucket: posted links
    stay those rather than name an address (the bound one, often 127.0.0.1) nobody outside can reach.
    """
    return facts.public_base_url is not None or not facts.discord_configured or _scheme(facts.storage_url) != "s3"


def _link_problems(facts: DeploymentFacts) -> list[ConfigProblem]:
    presigned = _scheme(facts.storage_url) == "s3"  # S3 links are presigned URLs on the bucket itself
    if facts.serves_users and facts.discord_configured and not presigned and facts.public_base_url is None:
        return [
            ConfigProblem(
                setting="PUBLIC_BASE_URL",
                problem="links to stored files would point at the bot's own address, which Discord users cannot open",
                fix="set PUBLIC_BASE_URL to the public address of the link server (WEB_HOST:WEB_PORT),"
                " or use an s3:// store, whose links are presigned",
            )
        ]
    return []
