"""What users and admins read during an outage: the delayed state, the batch's line, the once-per-incident alerts."""

from datetime import UTC, datetime, timedelta

from bot.core.item_errors import item_error_message
from bot.core.render import (
    BatchProgress,
    batch_progress_text,
    config_error_text,
    delayed_state,
    discord_time,
    service_down_text,
    service_restored_text,
)

SINCE = datetime(2026, 3, 1, 14, 5, 30, tzinfo=UTC)


def test_discord_time_is_a_short_time_timestamp_each_reader_sees_in_their_zone() -> None:
    assert discord_time(SINCE) == f"<t:{int(SINCE.timestamp())}:t>"


def test_delayed_state_names_the_image_workers_and_the_time() -> None:
    assert delayed_state("14:05") == "delayed: image workers unreachable since 14:05"


def test_a_running_batch_adds_the_delayed_line_and_an_ended_one_does_not() -> None:
    running = BatchProgress(total=10, done=2, failed=0, blocked=0, elapsed_s=60, cost_usd=0.1, delayed_since="14:05")
    assert "⚠️ delayed: image workers unreachable since 14:05" in batch_progress_text(running)
    ended = BatchProgress(
        total=10, done=2, failed=8, blocked=0, elapsed_s=60, cost_usd=0.1, state="failed", delayed_since="14:05"
    )
    assert "delayed" not in batch_progress_text(ended)
    assert "delayed" not in batch_progress_text(
        BatchProgress(total=1, done=0, failed=0, blocked=0, elapsed_s=1, cost_usd=0)
    )


def test_admin_alerts_name_the_service_the_reason_and_the_fix_on_one_line() -> None:
    down = service_down_text("runpod", "14:05", "cannot connect:\nrefused")
    assert down.startswith("⚠️ RunPod unreachable since 14:05 (cannot connect: refused)")
    assert service_restored_text("runpod", timedelta(minutes=4)) == "✅ RunPod is back after 4m 00s."
    config = config_error_text("runpod", "RunPod refused RUNPOD_API_KEY (HTTP 401)", "set RUNPOD_API_KEY to …")
    assert "RunPod refused Peel's configuration: RunPod refused RUNPOD_API_KEY (HTTP 401). Fix: set" in config


def test_users_read_fixed_messages_for_the_new_codes() -> None:
    assert item_error_message("UNAVAILABLE") == "The image service could not be reached; nothing was charged."
    assert item_error_message("CONFIG") == "Peel's image service is misconfigured; the admins have been told."


def test_a_gemini_outage_is_named_as_gemini_not_answering_and_runpods_wording_stays() -> None:
    assert delayed_state("14:05", "gemini") == "delayed: Gemini not answering since 14:05"
    assert delayed_state("14:05", "runpod") == delayed_state("14:05")
    running = BatchProgress(
        total=10,
        done=2,
        failed=0,
        blocked=0,
        elapsed_s=60,
        cost_usd=0.1,
        delayed_since="14:05",
        delayed_service="gemini",
    )
    assert "⚠️ delayed: Gemini not answering since 14:05; Peel carries on by itself when it answers" in (
        batch_progress_text(running)
    )
    down = service_down_text("gemini", "14:05", "Gemini unreachable: ClientConnectorError")
    assert down.startswith("⚠️ Gemini unreachable since 14:05 (Gemini unreachable: ClientConnectorError)")
    assert "GEMINI_BASE_URL" in down
    assert "GEMINI_BASE_URL" not in service_down_text("runpod", "14:05", "cannot connect")
