"""How the bot reads a batch resource as the Batch API's REST answer spells it (ai.google.dev/api/batch-mode)."""

from datetime import UTC, datetime

from bot.core.relax import BatchCounts
from bot.gemini.client import batch_from_rest


def test_a_running_batch_with_its_counts_as_int64_strings() -> None:
    info = batch_from_rest(
        {
            "name": "batches/abc",
            "metadata": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                "displayName": "peel-j_1-7",
                "state": "BATCH_STATE_RUNNING",
                "createTime": "2026-12-05T05:00:00.123456Z",
                "batchStats": {"requestCount": "10", "successfulRequestCount": "4", "pendingRequestCount": "6"},
            },
        }
    )
    assert info.name == "batches/abc" and info.display_name == "peel-j_1-7"
    assert info.state == "JOB_STATE_RUNNING"
    assert info.counts == BatchCounts(requests=10, succeeded=4, failed=0, pending=6)
    assert info.create_time == datetime(2026, 12, 5, 5, 0, 0, 123456, tzinfo=UTC)
    assert info.result_file is None


def test_a_succeeded_batch_names_its_responses_file() -> None:
    info = batch_from_rest(
        {"name": "batches/x", "metadata": {"state": "BATCH_STATE_SUCCEEDED", "output": {"responsesFile": "files/r1"}}}
    )
    assert info.state == "JOB_STATE_SUCCEEDED" and info.result_file == "files/r1"


def test_odd_shapes_read_as_a_pending_batch_with_no_counts() -> None:
    info = batch_from_rest({"name": "batches/y", "metadata": {"batchStats": {"requestCount": "many"}, "output": []}})
    assert info.state == "JOB_STATE_PENDING" and info.counts == BatchCounts() and info.result_file is None
