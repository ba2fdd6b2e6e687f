-- HTTP monitors (checked by worker nodes, each once per interval across nodes) and their recent
-- check results.

CREATE TABLE monitors (
    id                    TEXT    PRIMARY KEY NOT NULL,
    tenant_id             TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    service_id            TEXT    NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    name                  TEXT    NOT NULL,
    url                   TEXT    NOT NULL,
    method                TEXT    NOT NULL,
    interval_seconds      INTEGER NOT NULL,
    timeout_ms            INTEGER NOT NULL,
    expected_status       INTEGER NOT NULL,
    latency_threshold_ms  INTEGER,
    active                BOOLEAN NOT NULL,
    consecutive_failures  INTEGER NOT NULL,
    consecutive_passes    INTEGER NOT NULL,
    failing_since         INTEGER,
    open_incident_id      TEXT,
    next_check_at         INTEGER NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);

CREATE INDEX monitors_by_tenant ON monitors (tenant_id, id);
CREATE INDEX monitors_due ON monitors (next_check_at);

CREATE TABLE monitor_checks (
    id           TEXT    PRIMARY KEY NOT NULL,
    monitor_id   TEXT    NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    checked_at   INTEGER NOT NULL,
    passed       BOOLEAN NOT NULL,
    -- `availability` or `latency` when the check failed
    failure      TEXT,
    status_code  INTEGER,
    latency_ms   INTEGER NOT NULL,
    error        TEXT
);

CREATE INDEX monitor_checks_by_monitor ON monitor_checks (monitor_id, id);
