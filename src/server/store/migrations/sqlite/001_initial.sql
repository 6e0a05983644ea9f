-- The schema of the first release.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    ttl_s INTEGER NOT NULL,
    latency INTEGER NOT NULL,
    pbkeylen INTEGER NOT NULL,
    last_activity_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    closed_reason TEXT
);
CREATE TABLE IF NOT EXISTS streams (
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    label TEXT, role TEXT, audio TEXT,
    passphrase TEXT NOT NULL,
    latency INTEGER NOT NULL,
    tally TEXT NOT NULL,
    PRIMARY KEY (session, name)
);
CREATE TABLE IF NOT EXISTS peers (
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    role TEXT NOT NULL,
    ip TEXT NOT NULL,
    port INTEGER NOT NULL,
    meta TEXT NOT NULL,
    registered_ms INTEGER NOT NULL,
    health TEXT,
    health_ms INTEGER,
    PRIMARY KEY (session, stream, role)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT NOT NULL,
    ip TEXT,
    port INTEGER,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events(session, id);
