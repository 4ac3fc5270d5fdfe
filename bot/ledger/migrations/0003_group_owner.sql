-- Who owns a group: the user who opened its thread (with `/group new`, a batch, or in Discord itself). Only the
-- owner and Peel admins may rename or export it; a channel's default group (and one made before this column)
-- has none.

ALTER TABLE groups ADD COLUMN owner_id INTEGER;
