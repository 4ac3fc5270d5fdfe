from bot.core.events import JobSummary


def test_summary_has_no_errors_when_built_without_them() -> None:
    summary = JobSummary(ok=3, failed=0, cancelled=0, total=3)

    assert summary.errors == {}
