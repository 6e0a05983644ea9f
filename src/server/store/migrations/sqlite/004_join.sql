-- Whether a session has a waiting room (join token).
ALTER TABLE sessions ADD COLUMN join_enabled INTEGER NOT NULL DEFAULT 0;
