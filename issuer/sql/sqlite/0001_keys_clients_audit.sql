-- Timestamps are Unix seconds (REAL): SQLite has no timestamp type, and numbers compare in SQL.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    alg             TEXT NOT NULL,
    public_jwk      TEXT NOT NULL,
    private_wrapped BLOB,
    kek_id          TEXT,
    created_at      REAL NOT NULL,
    activates_at    REAL NOT NULL,
    revoked_at      REAL
) STRICT;
CREATE INDEX signing_keys_activates_at ON signing_keys (activates_at);

CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_hash TEXT,
    scopes      TEXT NOT NULL,
    first_party INTEGER NOT NULL DEFAULT 0,
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL
) STRICT;

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT NOT NULL DEFAULT '{}'
) STRICT;
