-- Budgets set from Discord (#25): admins' gates per role over `BUDGET_ROLES`, their audit trail, and caps put back
-- to the settings' default, told apart in the caps' audit trail.

-- An admin's gates for one role; each NULL column keeps the settings' value. `models` is 'all' or a comma list of
-- model ids; `max_batch_items` 0 is no limit.
CREATE TABLE budget_role_rules (
    role_id          INTEGER PRIMARY KEY,
    batch            INTEGER CHECK (batch IN (0, 1)),
    models           TEXT,
    allow_4k         INTEGER CHECK (allow_4k IN (0, 1)),
    max_batch_items  INTEGER CHECK (max_batch_items >= 0),
    set_by           INTEGER NOT NULL,
    set_at           TEXT NOT NULL
);

-- Every change of a role's gate: which, the value before and after as stored (NULL: the settings' value).
CREATE TABLE budget_rule_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    role_id     INTEGER NOT NULL,
    gate        TEXT NOT NULL,
    old_value   TEXT,
    new_value   TEXT,
    changed_by  INTEGER NOT NULL,
    changed_at  TEXT NOT NULL
);

-- A cap change from or to "no override" (the settings' default), which a NULL amount alone cannot tell from "no cap".
ALTER TABLE budget_changes ADD COLUMN old_default INTEGER NOT NULL DEFAULT 0;
ALTER TABLE budget_changes ADD COLUMN new_default INTEGER NOT NULL DEFAULT 0;
