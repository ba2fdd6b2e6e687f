-- Analyses of commit ranges (a change set of several commits analysed as one).

CREATE TABLE range_analyses (
    id           TEXT    PRIMARY KEY NOT NULL,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    service_id   TEXT    NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    base_sha     TEXT    NOT NULL,
    head_sha     TEXT    NOT NULL,
    commit_shas  TEXT    NOT NULL,
    analysis     TEXT    NOT NULL,
    risk_score   BIGINT  NOT NULL,
    risk_level   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);

CREATE INDEX range_analyses_by_service ON range_analyses (service_id, id);
