-- Who created a session (its client address as per-client limits count it).
ALTER TABLE sessions ADD COLUMN creator TEXT;
