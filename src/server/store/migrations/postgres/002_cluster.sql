-- Several servers on one database: each session is owned by one node at a time.
-- nodes: every running server, and the URL the others forward its sessions' requests to.
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    internal_url TEXT NOT NULL,
    seen_ms BIGINT NOT NULL
);
-- leases: who owns a session, since which takeover (epoch), until when (database clock, ms).
CREATE TABLE IF NOT EXISTS leases (
    session TEXT PRIMARY KEY REFERENCES sessions(name) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_owner ON leases(owner);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases(expires_ms);
-- sessions stored before: free for the first node to take
INSERT INTO leases(session, owner, epoch, expires_ms)
    SELECT name, '', 0, 0 FROM sessions WHERE closed_ms IS NULL
    ON CONFLICT (session) DO NOTHING;
