-- Users, refresh-token families, the revocation feed and login throttling.
CREATE TABLE users (
    user_id       text PRIMARY KEY,
    username      text NOT NULL,
    username_key  text NOT NULL,      -- NFKC + casefold: the unique, compared form
    password_hash text NOT NULL,      -- argon2id (PHC string)
    roles         text NOT NULL DEFAULT '',
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_username_key ON users (username_key);

-- One family per login; every refresh token of that login belongs to it.
CREATE TABLE refresh_families (
    family_id  text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (user_id),
    client_id  text NOT NULL REFERENCES clients (client_id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,  -- absolute lifetime
    revoked_at timestamptz
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

-- Only the SHA-256 of a refresh token is stored.
CREATE TABLE refresh_tokens (
    token_hash      text PRIMARY KEY,
    family_id       text NOT NULL REFERENCES refresh_families (family_id),
    generation      integer NOT NULL,
    parent_hash     text,             -- the token this one was issued for
    scope           text NOT NULL,
    issued_at       timestamptz NOT NULL,
    idle_expires_at timestamptz NOT NULL,
    spent_at        timestamptz,
    UNIQUE (family_id, generation)
);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (family_id, parent_hash);

-- Access tokens issued from a family, so revoking the family can deny-list them.
CREATE TABLE family_access_tokens (
    jti       text PRIMARY KEY,
    family_id text NOT NULL REFERENCES refresh_families (family_id),
    exp       timestamptz NOT NULL
);
CREATE INDEX family_access_tokens_family ON family_access_tokens (family_id);

-- The deny list and the revocation feed: kind 'jti' (at = exp) or 'sub' (at = revoked_before).
-- Writers take an advisory lock, so seq order is commit order and a feed cursor never skips.
CREATE TABLE revocation_events (
    seq        bigserial PRIMARY KEY,
    kind       text NOT NULL,
    subject    text NOT NULL,
    at         timestamptz NOT NULL,
    drop_after timestamptz NOT NULL,
    UNIQUE (kind, subject, at)
);
CREATE INDEX revocation_events_drop_after ON revocation_events (drop_after);

-- Failed-login counters per fixed window, shared by every replica.
CREATE TABLE login_failures (
    kind         text NOT NULL,       -- 'username' | 'address'
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    count        integer NOT NULL,
    PRIMARY KEY (kind, key, window_start)
);
