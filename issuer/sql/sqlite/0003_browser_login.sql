-- Browser login (authorization code + PKCE, OpenID Connect): client registration,
-- browser sessions, pending interactions, codes and consents. Times are Unix seconds.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';             -- space-separated
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN web_origins TEXT NOT NULL DEFAULT '';

-- One row per browser login; the cookie holds a random id, only its SHA-256 is here.
CREATE TABLE browser_sessions (
    session_hash TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    auth_time    REAL NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    ended_at     REAL
) STRICT;
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);

-- An authorization request waiting for the user (login, consent), bound to one browser.
CREATE TABLE interactions (
    interaction_id TEXT PRIMARY KEY,   -- public: it is in the page's URL
    browser_hash   TEXT NOT NULL,      -- SHA-256 of the cookie that binds it to the browser
    client_id      TEXT NOT NULL REFERENCES clients (client_id),
    request        TEXT NOT NULL,      -- the validated authorization request (JSON)
    user_id        TEXT REFERENCES users (user_id),
    session_hash   TEXT,
    auth_time      REAL,
    created_at     REAL NOT NULL,
    expires_at     REAL NOT NULL
) STRICT;

CREATE TABLE authorization_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES clients (client_id),
    user_id        TEXT NOT NULL REFERENCES users (user_id),
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    auth_time      REAL NOT NULL,
    session_hash   TEXT,
    issued_at      REAL NOT NULL,
    expires_at     REAL NOT NULL,
    used_at        REAL,
    family_id      TEXT                -- the refresh family issued from it (revoked on replay)
) STRICT;

-- Which refresh families a browser session started (RP-initiated logout ends them).
-- No foreign key to refresh_families: the session purge removes these links.
CREATE TABLE browser_session_families (
    family_id    TEXT PRIMARY KEY,     -- no foreign key: purged with the session
    session_hash TEXT NOT NULL
) STRICT;
CREATE INDEX browser_session_families_session ON browser_session_families (session_hash);

CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (user_id),
    client_id  TEXT NOT NULL REFERENCES clients (client_id),
    scope      TEXT NOT NULL,
    granted_at REAL NOT NULL,
    PRIMARY KEY (user_id, client_id)
) STRICT;
