-- HTTP monitors (checked by worker nodes, each once per interval across nodes) and their recent
-- check results.

CREATE TABLE monitors (
    id                    TEXT    PRIMARY KEY NOT NULL,
    tenant_id             TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    service_id            TEXT    NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    name                  TEXT    NOT NULL,
    url                   TEXT    NOT NULL,
    method                TEXT    NOT NULL,
    interval_seconds      BIGINT  NOT NULL,
    timeout_ms            BIGINT  NOT NULL,
    expected_status       BIGINT  NOT NULL,
    latency_threshold_ms  BIGINT,
    active                BOOLEAN NOT NULL,
    consecutive_failures  BIGINT  NOT NULL,
    consecutive_passes    BIGINT  NOT NULL,
    failing_since         BIGINT,
    open_incident_id      TEXT,
    next_check_at         BIGINT  NOT NULL,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL
);

CREATE INDEX monitors_by_tenant ON monitors (tenant_id, id);
CREATE INDEX monitors_due ON monitors (next_check_at);

CREATE TABLE monitor_checks (
    id           TEXT    PRIMARY KEY NOT NULL,
    monitor_id   TEXT    NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    checked_at   BIGINT  NOT NULL,
    passed       BOOLEAN NOT NULL,
    -- `availability` or `latency` when the check failed
    failure      TEXT,
    status_code  BIGINT,
    latency_ms   BIGINT  NOT NULL,
    error        TEXT
);

CREATE INDEX monitor_checks_by_monitor ON monitor_checks (monitor_id, id);
