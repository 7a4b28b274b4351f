-- Browser login (authorization code + PKCE, OpenID Connect): client registration,
-- browser sessions, pending interactions, codes and consents. Times are timestamptz.
ALTER TABLE clients ADD COLUMN redirect_uris text NOT NULL DEFAULT '';             -- space-separated
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris text NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN web_origins text NOT NULL DEFAULT '';

-- One row per browser login; the cookie holds a random id, only its SHA-256 is here.
CREATE TABLE browser_sessions (
    session_hash text PRIMARY KEY,
    user_id      text NOT NULL REFERENCES users (user_id),
    auth_time    timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);

-- An authorization request waiting for the user (login, consent), bound to one browser.
CREATE TABLE interactions (
    interaction_id text PRIMARY KEY,   -- public: it is in the page's URL
    browser_hash   text NOT NULL,      -- SHA-256 of the cookie that binds it to the browser
    client_id      text NOT NULL REFERENCES clients (client_id),
    request        text NOT NULL,      -- the validated authorization request (JSON)
    user_id        text REFERENCES users (user_id),
    session_hash   text,
    auth_time      timestamptz,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);

CREATE TABLE authorization_codes (
    code_hash      text PRIMARY KEY,
    client_id      text NOT NULL REFERENCES clients (client_id),
    user_id        text NOT NULL REFERENCES users (user_id),
    redirect_uri   text NOT NULL,
    scope          text NOT NULL,
    code_challenge text NOT NULL,
    nonce          text,
    auth_time      timestamptz NOT NULL,
    session_hash   text,
    issued_at      timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz,
    family_id      text                -- the refresh family issued from it (revoked on replay)
);

-- Which refresh families a browser session started (RP-initiated logout ends them).
-- No foreign key to refresh_families: the session purge removes these links.
CREATE TABLE browser_session_families (
    family_id    text PRIMARY KEY,     -- no foreign key: purged with the session
    session_hash text NOT NULL
);
CREATE INDEX browser_session_families_session ON browser_session_families (session_hash);

CREATE TABLE consents (
    user_id    text NOT NULL REFERENCES users (user_id),
    client_id  text NOT NULL REFERENCES clients (client_id),
    scope      text NOT NULL,
    granted_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
