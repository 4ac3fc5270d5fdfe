"""WorkerSettings: defaults, names as environment variables, and error messages that never echo values."""

import pytest
from pydantic import ValidationError

from worker.settings import WorkerSettings, describe_settings_error


def test_defaults_select_the_embedded_file_store_and_one_job_when_nothing_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STORAGE_URL", raising=False)

    settings = WorkerSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings init-only kwarg

    assert settings.storage_url == "file://./data/store"
    assert settings.max_concurrent_jobs == 1
    assert settings.progress_interval_s == 1.0


def test_storage_url_and_worker_prefix_are_read_when_set_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("WORKER_MAX_CONCURRENT_JOBS", "3")

    settings = WorkerSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings init-only kwarg

    assert (settings.storage_url, settings.max_concurrent_jobs) == ("s3://bucket/prefix", 3)


def test_error_names_environment_variables_without_values_when_settings_are_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_URL", "")
    monkeypatch.setenv("WORKER_MAX_CONCURRENT_JOBS", "-7")

    with pytest.raises(ValidationError) as caught:
        WorkerSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings init-only kwarg

    message = describe_settings_error(caught.value, env_prefix="WORKER_")
    assert "STORAGE_URL: " in message
    assert "WORKER_STORAGE_URL" not in message
    assert "WORKER_MAX_CONCURRENT_JOBS: " in message
    assert "-7" not in message
