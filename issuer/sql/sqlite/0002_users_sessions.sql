-- Users, refresh-token families, the revocation feed and login throttling.
-- Timestamps are Unix seconds (REAL), as in 0001.
CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL,      -- NFKC + casefold: the unique, compared form
    password_hash TEXT NOT NULL,      -- argon2id (PHC string)
    roles         TEXT NOT NULL DEFAULT '',
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
) STRICT;
CREATE UNIQUE INDEX users_username_key ON users (username_key);

-- One family per login; every refresh token of that login belongs to it.
CREATE TABLE refresh_families (
    family_id  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (user_id),
    client_id  TEXT NOT NULL REFERENCES clients (client_id),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,         -- absolute lifetime
    revoked_at REAL
) STRICT;
CREATE INDEX refresh_families_user ON refresh_families (user_id);

-- Only the SHA-256 of a refresh token is stored.
CREATE TABLE refresh_tokens (
    token_hash      TEXT PRIMARY KEY,
    family_id       TEXT NOT NULL REFERENCES refresh_families (family_id),
    generation      INTEGER NOT NULL,
    parent_hash     TEXT,             -- the token this one was issued for
    scope           TEXT NOT NULL,
    issued_at       REAL NOT NULL,
    idle_expires_at REAL NOT NULL,
    spent_at        REAL,
    UNIQUE (family_id, generation)
) STRICT;
CREATE INDEX refresh_tokens_parent ON refresh_tokens (family_id, parent_hash);

-- Access tokens issued from a family, so revoking the family can deny-list them.
CREATE TABLE family_access_tokens (
    jti       TEXT PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES refresh_families (family_id),
    exp       REAL NOT NULL
) STRICT;
CREATE INDEX family_access_tokens_family ON family_access_tokens (family_id);

-- The deny list and the revocation feed: kind 'jti' (at = exp) or 'sub' (at = revoked_before).
CREATE TABLE revocation_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    at         REAL NOT NULL,
    drop_after REAL NOT NULL,
    UNIQUE (kind, subject, at)
) STRICT;
CREATE INDEX revocation_events_drop_after ON revocation_events (drop_after);

-- Failed-login counters per fixed window, shared by every worker.
CREATE TABLE login_failures (
    kind         TEXT NOT NULL,       -- 'username' | 'address'
    key          TEXT NOT NULL,
    window_start REAL NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (kind, key, window_start)
) STRICT;
