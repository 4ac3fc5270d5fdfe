-- Budgets (#25): money caps set by admins over the settings' defaults, their audit trail, and the reservations
-- that keep concurrent jobs of one user or guild from racing past a cap. Amounts are whole micro-dollars.

-- An admin's cap for one scope and period; `usd_micros` NULL means "no cap" (overriding a default).
CREATE TABLE budget_caps (
    scope_kind  TEXT NOT NULL CHECK (scope_kind IN ('user', 'role', 'guild')),
    scope_id    INTEGER NOT NULL,
    period      TEXT NOT NULL CHECK (period IN ('day', 'month')),
    usd_micros  INTEGER,
    set_by      INTEGER NOT NULL,
    set_at      TEXT NOT NULL,
    PRIMARY KEY (scope_kind, scope_id, period)
) WITHOUT ROWID;

-- Every change of a cap: who, when, what, the cap before and after (NULL: none).
CREATE TABLE budget_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_kind  TEXT NOT NULL,
    scope_id    INTEGER NOT NULL,
    period      TEXT NOT NULL,
    old_micros  INTEGER,
    new_micros  INTEGER,
    changed_by  INTEGER NOT NULL,
    changed_at  TEXT NOT NULL
);

-- A job's estimated cost, reserved in the transaction that creates it; until settled it counts against the caps
-- for what of it is not yet spent. `limits` holds the caps the job was admitted under (JSON), which the
-- dispatcher checks again before each chunk.
CREATE TABLE budget_reservations (
    job_id      TEXT PRIMARY KEY REFERENCES jobs (id),
    owner_id    INTEGER NOT NULL,
    guild_id    INTEGER,
    amount      INTEGER NOT NULL,
    limits      TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    settled_at  TEXT,
    settled     INTEGER
) WITHOUT ROWID;
CREATE INDEX budget_reservations_open ON budget_reservations (owner_id, guild_id) WHERE settled_at IS NULL;

-- What was spent in a period is read from the images made in it (until each item records its own cost).
CREATE INDEX images_by_time ON images (created_at);
