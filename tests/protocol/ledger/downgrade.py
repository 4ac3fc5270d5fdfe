"""Turn a ledger file back into schema 6 (before #25's migrations), as a bot of that time left it."""

import sqlite3
from pathlib import Path


def to_schema_6(db_path: Path) -> None:
    """Undo 0011 (prompt prefs), 0010 (budget rules), 0009, 0008 (budgets) and 0007 (spend) on a file; blocking."""
    with sqlite3.connect(db_path) as db:
        for table in ("option_sets", "prompt_suffixes"):
            db.execute(f"DROP TABLE IF EXISTS {table}")
        for index in ("items_spent_by_job", "jobs_by_guild"):
            db.execute(f"DROP INDEX IF EXISTS {index}")
        for table in (
            "budget_rule_changes",
            "budget_role_rules",
            "budget_reservations",
            "budget_changes",
            "budget_caps",
        ):
            db.execute(f"DROP TABLE {table}")
        for index in ("images_by_time", "items_by_spent_at", "chunks_by_finished_at"):
            db.execute(f"DROP INDEX {index}")
        for table, column in [
            ("items", "cost_usd"),
            ("items", "usage"),
            ("items", "spent_at"),
            ("chunks", "runpod_s"),
            ("chunks", "runpod_cost_usd"),
        ]:
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 6")
