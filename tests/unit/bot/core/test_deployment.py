"""The configurations refused at start-up: each rule names its setting and fix; the defaults pass."""

import dataclasses

import pytest

from bot.core.deployment import DeploymentFacts, impossible_configurations, web_server_reaches_users

EMBEDDED = DeploymentFacts(
    discord_configured=False,
    runpod_configured=False,
    runpod_base_url="https://api.runpod.ai/v2",
    storage_url="file:///srv/peel/data/store",
)
DEPLOYED = DeploymentFacts(
    discord_configured=True,
    runpod_configured=True,
    runpod_base_url="https://api.runpod.ai/v2",
    storage_url="s3://peel/outputs?region=auto",
)


def settings_named(facts: DeploymentFacts) -> list[str]:
    return [problem.setting for problem in impossible_configurations(facts)]


@pytest.mark.parametrize("facts", [EMBEDDED, DEPLOYED], ids=["embedded", "deployed-on-s3"])
def test_configurations_that_work_have_no_problem(facts: DeploymentFacts) -> None:
    assert impossible_configurations(facts) == []


def test_a_file_store_is_refused_with_a_remote_runpod_endpoint() -> None:
    facts = dataclasses.replace(DEPLOYED, storage_url="file:///srv/store", public_base_url="https://peel.example")
    [problem] = impossible_configurations(facts)
    assert problem.setting == "STORAGE_URL"
    assert "RunPod's workers cannot read" in problem.problem
    assert "s3://" in problem.fix


def test_a_file_store_is_allowed_when_the_endpoint_s_workers_share_this_machine() -> None:
    facts = dataclasses.replace(DEPLOYED, storage_url="file:///srv/store", public_base_url="https://peel.example")
    facts = dataclasses.replace(facts, storage_shared_with_workers=True)
    assert impossible_configurations(facts) == []


def test_a_memory_store_is_refused_even_with_the_embedded_endpoint() -> None:
    assert settings_named(dataclasses.replace(EMBEDDED, storage_url="memory://")) == ["STORAGE_URL"]


def test_an_unknown_store_scheme_is_refused() -> None:
    assert settings_named(dataclasses.replace(EMBEDDED, storage_url="gs://bucket")) == ["STORAGE_URL"]


def test_real_discord_with_served_links_needs_a_public_base_url() -> None:
    facts = dataclasses.replace(EMBEDDED, discord_configured=True)
    [problem] = impossible_configurations(facts)
    assert problem.setting == "PUBLIC_BASE_URL"
    assert impossible_configurations(dataclasses.replace(facts, public_base_url="https://peel.example")) == []
    # presigned S3 links and the headless CLI need no link server
    assert impossible_configurations(dataclasses.replace(facts, storage_url="s3://b/p")) == []
    assert impossible_configurations(dataclasses.replace(facts, serves_users=False)) == []


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"public_base_url": "peel.example.com"}, "PUBLIC_BASE_URL"),
        ({"public_base_url": "/links"}, "PUBLIC_BASE_URL"),
        ({"gemini_base_url": "localhost:8790"}, "GEMINI_BASE_URL"),
        ({"runpod_configured": True, "runpod_base_url": "runpod/v2", "storage_url": "s3://b"}, "RUNPOD_BASE_URL"),
        ({"export_destinations": {"archive": "ftp://host/x"}}, "EXPORT_DESTINATIONS"),
    ],
)
def test_malformed_urls_are_refused(change: dict[str, object], setting: str) -> None:
    assert settings_named(dataclasses.replace(EMBEDDED, **change)) == [setting]  # type: ignore[arg-type]


def test_every_problem_is_reported_at_once() -> None:
    facts = dataclasses.replace(DEPLOYED, storage_url="file:///x", public_base_url="nope")
    assert settings_named(facts) == ["PUBLIC_BASE_URL", "STORAGE_URL"]


@pytest.mark.parametrize(
    ("change", "reached"),
    [
        ({}, False),  # S3 with real Discord and no PUBLIC_BASE_URL: the presigned URLs stay
        ({"public_base_url": "https://peel.example"}, True),
        ({"discord_configured": False}, True),  # the playground, on this machine
        ({"storage_url": "file:///srv/store", "public_base_url": "https://peel.example"}, True),
    ],
)
def test_stable_links_are_handed_out_only_where_users_can_open_the_web_server(
    change: dict[str, object], reached: bool
) -> None:
    assert web_server_reaches_users(dataclasses.replace(DEPLOYED, **change)) is reached  # type: ignore[arg-type]


def test_relax_needs_the_bots_own_gemini_key_beside_a_runpod_endpoint() -> None:
    from bot.core.deployment import relax_available

    assert relax_available(EMBEDDED)  # the embedded endpoint and the bot share one Gemini
    assert not relax_available(DEPLOYED)
    assert relax_available(dataclasses.replace(DEPLOYED, gemini_configured=True))
    # Only a default of relax is refused at start-up; otherwise relax is refused when chosen, with the fix.
    assert impossible_configurations(DEPLOYED) == []
    [problem] = impossible_configurations(dataclasses.replace(DEPLOYED, relax_by_default=True))
    assert problem.setting == "BATCH_DEFAULT_SPEED / RELAX_GUILDS" and "GEMINI_API_KEY" in problem.fix
    assert impossible_configurations(dataclasses.replace(DEPLOYED, relax_by_default=True, gemini_configured=True)) == []
