-- Outbound webhooks: custom event types, endpoints, events (the outbox), deliveries (the queue),
-- every delivery attempt, and idempotency keys of publish requests.

CREATE TABLE event_types (
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    schema      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE endpoints (
    id                       TEXT    PRIMARY KEY NOT NULL,
    tenant_id                TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                      TEXT    NOT NULL,
    name                     TEXT    NOT NULL,
    description              TEXT    NOT NULL,
    event_types              TEXT,
    active                   BOOLEAN NOT NULL,
    secret                   BLOB    NOT NULL,
    previous_secret          BLOB,
    previous_secret_until    INTEGER,
    consecutive_failures     INTEGER NOT NULL,
    disabled_reason          TEXT,
    disabled_at              INTEGER,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
);

CREATE INDEX endpoints_by_tenant ON endpoints (tenant_id, id);

CREATE TABLE events (
    id          TEXT    PRIMARY KEY NOT NULL,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type  TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX events_by_age ON events (created_at);

CREATE TABLE deliveries (
    id               TEXT    PRIMARY KEY NOT NULL,
    tenant_id        TEXT    NOT NULL,
    endpoint_id      TEXT    NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    event_id         TEXT    NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    event_type       TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempt_count    INTEGER NOT NULL,
    round_attempts   INTEGER NOT NULL,
    next_attempt_at  INTEGER,
    lease_owner      TEXT,
    last_status_code INTEGER,
    last_error_kind  TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_completed ON deliveries (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE delivery_attempts (
    id               TEXT    PRIMARY KEY NOT NULL,
    delivery_id      TEXT    NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt_number   INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    url              TEXT    NOT NULL,
    request_headers  TEXT    NOT NULL,
    response_status  INTEGER,
    response_headers TEXT,
    response_body    TEXT,
    error_kind       TEXT,
    error_message    TEXT,
    succeeded        BOOLEAN NOT NULL
);

CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id, attempt_number);

CREATE TABLE idempotency_keys (
    tenant_id       TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    idempotency_key TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    response_status INTEGER NOT NULL,
    response_body   TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
