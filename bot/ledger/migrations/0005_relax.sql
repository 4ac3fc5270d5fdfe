-- Relax mode: a part of a relax batch is one Gemini Batch API job. Its items are a chunk's (`chunks`, with
-- concurrency 0: it holds no online Gemini calls); this row follows the part through its phases. Everything needed
-- to carry on after a restart is here: the RunPod job preparing or collecting it, the uploaded files, and the
-- Gemini batch's name (found again by its display name when the bot died between creating and recording it).

CREATE TABLE relax_parts (
    chunk_id          INTEGER PRIMARY KEY REFERENCES chunks (id),
    job_id            TEXT NOT NULL REFERENCES jobs (id),
    phase             TEXT NOT NULL CHECK (phase IN ('preparing', 'submitted', 'running', 'collecting', 'done')),
    runpod_id         TEXT,                       -- the relax_prepare or relax_collect RunPod job in flight
    runpod_attempts   INTEGER NOT NULL DEFAULT 0, -- RunPod jobs of the current phase that ended without an answer
    input_file        TEXT,                       -- the uploaded JSONL of requests ("files/…")
    ref_files         TEXT NOT NULL DEFAULT '[]', -- references uploaded once for the part
    batch_name        TEXT,                       -- "batches/…" once created
    batch_state       TEXT,                       -- Gemini's last reported state (JOB_STATE_…)
    stats             TEXT,                       -- Gemini's last counts (JSON)
    result_file       TEXT,                       -- the batch's responses file ("files/…")
    created_at        TEXT NOT NULL,
    batch_created_at  TEXT,
    checked_at        TEXT,                       -- when Gemini was last asked about the batch
    finished_at       TEXT
);
CREATE INDEX relax_parts_open ON relax_parts (phase) WHERE phase <> 'done';
CREATE INDEX relax_parts_by_job ON relax_parts (job_id);
