-- Deploys (with the commits each shipped since the previous deploy of its service and
-- environment) and incidents (with their ranked suspect commits).

CREATE TABLE deploys (
    id            TEXT    PRIMARY KEY NOT NULL,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    service_id    TEXT    NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    commit_sha    TEXT    NOT NULL,
    branch        TEXT,
    environment   TEXT,
    deployed_by   TEXT,
    deployed_at   INTEGER NOT NULL
);

CREATE INDEX deploys_by_service ON deploys (service_id, id);

CREATE TABLE deploy_commits (
    deploy_id   TEXT    NOT NULL REFERENCES deploys (id) ON DELETE CASCADE,
    commit_id   TEXT    NOT NULL REFERENCES commits (id) ON DELETE CASCADE,
    PRIMARY KEY (deploy_id, commit_id)
);

CREATE TABLE incidents (
    id               TEXT    PRIMARY KEY NOT NULL,
    tenant_id        TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    service_id       TEXT    NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    title            TEXT    NOT NULL,
    severity         TEXT    NOT NULL,
    incident_type    TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    -- {id, name, url} of the monitor that opened it, as it was then; NULL when opened by hand
    monitor          TEXT,
    monitor_id       TEXT,
    started_at       INTEGER NOT NULL,
    acknowledged_at  INTEGER,
    resolved_at      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE INDEX incidents_by_tenant ON incidents (tenant_id, id);

CREATE TABLE incident_suspects (
    incident_id  TEXT    NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    commit_id    TEXT    NOT NULL REFERENCES commits (id) ON DELETE CASCADE,
    deploy_id    TEXT    NOT NULL,
    rank         INTEGER NOT NULL,
    score        INTEGER NOT NULL,
    reasons      TEXT    NOT NULL,
    PRIMARY KEY (incident_id, commit_id)
);
