-- Signing keys: the schedule is data; state is derived from the timestamps.
CREATE TABLE signing_keys (
    kid             text PRIMARY KEY,
    alg             text NOT NULL,
    public_jwk      text NOT NULL,
    private_wrapped bytea,            -- AES-256-GCM under the KEK; NULL once destroyed
    kek_id          text,
    created_at      timestamptz NOT NULL,
    activates_at    timestamptz NOT NULL,
    revoked_at      timestamptz
);
CREATE INDEX signing_keys_activates_at ON signing_keys (activates_at);

CREATE TABLE clients (
    client_id   text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    secret_hash text,                 -- NULL for a public client
    scopes      text NOT NULL,        -- space-separated
    first_party boolean NOT NULL DEFAULT false,
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL
);

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text,
    detail  text NOT NULL DEFAULT '{}'
);
