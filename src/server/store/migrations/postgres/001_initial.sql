-- The schema, as the SQLite one after its fourth migration (integers are BIGINT, flags BOOLEAN).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    ttl_s BIGINT NOT NULL,
    latency BIGINT NOT NULL,
    pbkeylen BIGINT NOT NULL,
    last_activity_ms BIGINT NOT NULL,
    closed_ms BIGINT,
    closed_reason TEXT,
    creator TEXT,
    public_host TEXT,
    join_enabled BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS streams (
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    name TEXT NOT NULL,
    label TEXT, role TEXT, audio TEXT,
    passphrase TEXT NOT NULL,
    latency BIGINT NOT NULL,
    tally TEXT NOT NULL,
    devices TEXT NOT NULL DEFAULT '[null,null]',
    PRIMARY KEY (session, name)
);
CREATE TABLE IF NOT EXISTS peers (
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    role TEXT NOT NULL,
    ip TEXT NOT NULL,
    port BIGINT NOT NULL,
    meta TEXT NOT NULL,
    registered_ms BIGINT NOT NULL,
    health TEXT,
    health_ms BIGINT,
    PRIMARY KEY (session, stream, role)
);
CREATE TABLE IF NOT EXISTS events (
    id BIGSERIAL PRIMARY KEY,
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT NOT NULL,
    ip TEXT,
    port BIGINT,
    at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events(session, id);
