-- `/prefer suffix` and `/prefer option set` (#26): per user, the text added to every prompt and the named sets of
-- parameters `--name` stands for (at most 20 per user, enforced where they are written: `bot/ledger/prefer.py`).

CREATE TABLE prompt_suffixes (
    user_id     INTEGER PRIMARY KEY,
    suffix      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE option_sets (
    user_id     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    options     TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
