-- When its owner deleted an image's message with ❌: the image stays in the store and in its job, but it has left
-- its group (thread), so the group's ZIP, export and count leave it out. NULL: not deleted.

ALTER TABLE images ADD COLUMN deleted_at TEXT;
