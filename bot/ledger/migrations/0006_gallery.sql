-- Gallery links (#24): a capability URL per group. The token itself is never stored: it is derived from the link
-- secret and `nonce` (bot.core.gallery.gallery_token), and found again by its SHA-256 (`token_hash`), so a copy of
-- the ledger alone opens no gallery. One active link per group; revoking stamps `revoked_at` and issues a new one.

CREATE TABLE gallery_links (
    token_hash  TEXT PRIMARY KEY,
    group_id    TEXT NOT NULL REFERENCES groups (id),
    nonce       TEXT NOT NULL,
    issued_by   INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    can_export  INTEGER NOT NULL DEFAULT 0,
    revoked_at  TEXT
) WITHOUT ROWID;
CREATE UNIQUE INDEX gallery_links_active ON gallery_links (group_id) WHERE revoked_at IS NULL;

-- A gallery page lists a group's jobs newest first; without this every page scans every job.
CREATE INDEX jobs_by_group ON jobs (group_id, seq);
