-- People who sign in to the web UI, their one-time links (first admin, invitations, password
-- resets), their server-side sessions, and failed sign-ins (for throttling).
-- Codes and session ids are stored only as SHA-256 hashes.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY NOT NULL,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Lowercased; one person signs in to one tenant.
    email         TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    -- Argon2id PHC string; NULL until the person sets a password through a link.
    password_hash TEXT,
    role          TEXT    NOT NULL,
    created_at    INTEGER  NOT NULL,
    updated_at    INTEGER  NOT NULL
);

CREATE INDEX users_by_tenant ON users (tenant_id, id);

-- A link either creates a new user (user_id NULL: the first admin) or sets the password of the
-- user it names (an invitation or a reset).
CREATE TABLE user_links (
    code_hash  TEXT    PRIMARY KEY NOT NULL,
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    TEXT    REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL,
    created_at INTEGER  NOT NULL,
    expires_at INTEGER  NOT NULL,
    used_at    INTEGER
);

CREATE TABLE web_sessions (
    id_hash      TEXT    PRIMARY KEY NOT NULL,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   INTEGER  NOT NULL,
    last_seen_at INTEGER  NOT NULL,
    expires_at   INTEGER  NOT NULL
);

CREATE INDEX web_sessions_by_user ON web_sessions (user_id);

CREATE TABLE sign_in_failures (
    email     TEXT    NOT NULL,
    failed_at INTEGER  NOT NULL
);

CREATE INDEX sign_in_failures_by_email ON sign_in_failures (email, failed_at);
