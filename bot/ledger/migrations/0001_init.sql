-- Peel's job ledger, version 1. Times are ISO 8601 UTC text with microseconds (they sort as text);
-- JSON columns hold objects written by bot.core.models. Enum columns hold the lowercase values of its enums.

CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    guild_id    INTEGER,
    channel_id  INTEGER,
    thread_id   INTEGER,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX groups_by_thread ON groups (thread_id) WHERE thread_id IS NOT NULL;
CREATE UNIQUE INDEX groups_by_channel ON groups (channel_id) WHERE thread_id IS NULL AND channel_id IS NOT NULL;

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    seq              INTEGER NOT NULL UNIQUE,   -- creation order (times can tie)
    kind             TEXT NOT NULL,
    owner_id         INTEGER NOT NULL,
    guild_id         INTEGER,
    group_id         TEXT REFERENCES groups (id),
    prompt           TEXT NOT NULL,
    params           TEXT NOT NULL,
    parent_image_id  TEXT,
    status           TEXT NOT NULL CHECK (status IN ('waiting', 'queued', 'running', 'paused', 'done', 'failed', 'cancelled')),
    priority         TEXT NOT NULL CHECK (priority IN ('interactive', 'batch')),
    idempotency_key  TEXT UNIQUE,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    total            INTEGER NOT NULL DEFAULT 0,
    ok               INTEGER NOT NULL DEFAULT 0,
    failed           INTEGER NOT NULL DEFAULT 0,
    cancelled        INTEGER NOT NULL DEFAULT 0,
    error            TEXT
);
CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_owner ON jobs (owner_id, status);

CREATE TABLE chunks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id         TEXT NOT NULL REFERENCES jobs (id),
    seq            INTEGER NOT NULL,
    runpod_id      TEXT,
    indices        TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('submitting', 'in_flight', 'done', 'lost', 'cancelled')),
    concurrency    INTEGER NOT NULL,
    attempt        INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    submitted_at   TEXT,
    finished_at    TEXT,
    remote_status  TEXT,
    last_progress  TEXT,
    UNIQUE (job_id, seq)
);
CREATE INDEX chunks_by_status ON chunks (status);

CREATE TABLE items (
    job_id         TEXT NOT NULL REFERENCES jobs (id),
    idx            INTEGER NOT NULL,
    inputs         TEXT NOT NULL,
    prompt         TEXT,
    seed           INTEGER NOT NULL,
    output_key     TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'ok', 'error', 'cancelled')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    error_code     TEXT,
    error_message  TEXT,
    retry_at       TEXT,
    chunk_id       INTEGER REFERENCES chunks (id),
    width          INTEGER,
    height         INTEGER,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE INDEX items_by_status ON items (job_id, status, retry_at);

CREATE TABLE images (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES jobs (id),
    idx          INTEGER NOT NULL,
    key          TEXT NOT NULL,
    group_id     TEXT REFERENCES groups (id),
    owner_id     INTEGER NOT NULL,
    width        INTEGER,
    height       INTEGER,
    favourite    INTEGER NOT NULL DEFAULT 0,
    message_id   INTEGER,
    created_at   TEXT NOT NULL,
    UNIQUE (job_id, idx)
);
CREATE INDEX images_by_group ON images (group_id, created_at);

CREATE TABLE user_preferences (
    user_id     INTEGER PRIMARY KEY,
    prefs       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
