-- Tenants, their API tokens, and server-wide settings (the master key check).
-- Timestamps are Unix milliseconds on both backends.

CREATE TABLE tenants (
    id          TEXT    PRIMARY KEY NOT NULL,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY NOT NULL,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, id);

CREATE TABLE server_settings (
    name       TEXT    PRIMARY KEY NOT NULL,
    value      BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
);
