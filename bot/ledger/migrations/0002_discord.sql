-- Where each job shows itself in Discord, so edits resume after a restart (the lifecycle message of a grid,
-- the one progress message of a batch, its summary message), and the batch's intake summary before Start.

CREATE TABLE job_messages (
    job_id       TEXT NOT NULL REFERENCES jobs (id),
    role         TEXT NOT NULL,            -- 'status' (the lifecycle or progress message), 'result', 'summary'
    channel_id   INTEGER NOT NULL,
    message_id   INTEGER NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (job_id, role)
) WITHOUT ROWID;
CREATE INDEX job_messages_by_message ON job_messages (message_id);

-- Key/value notes about a job that only the Discord layer reads (e.g. the reply-edit chain, the intake report).
CREATE TABLE job_notes (
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    name     TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
) WITHOUT ROWID;
