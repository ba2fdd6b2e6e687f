-- Inbound webhooks and the record they feed: services and their push secrets, commits with their
-- branches and files, pull requests, forge issues, every inbound delivery, GitHub integrations,
-- experiments with their activity, and the queue of commit analysis jobs.

CREATE TABLE services (
    id                       TEXT    PRIMARY KEY NOT NULL,
    tenant_id                TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                     TEXT    NOT NULL,
    repository               TEXT    NOT NULL,
    -- lowercase repository: forges match names without regard to case
    repository_key           TEXT    NOT NULL,
    github_token             BYTEA,
    auto_analyze             BOOLEAN NOT NULL,
    webhook_secret           BYTEA,
    webhook_secret_created_at BIGINT,
    previous_webhook_secret  BYTEA,
    previous_secret_until    BIGINT,
    created_at               BIGINT  NOT NULL,
    updated_at               BIGINT  NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE INDEX services_by_tenant ON services (tenant_id, id);
CREATE INDEX services_by_repository ON services (repository_key);

CREATE TABLE commits (
    id            TEXT    PRIMARY KEY NOT NULL,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    service_id    TEXT    NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    sha           TEXT    NOT NULL,
    message       TEXT    NOT NULL,
    author_name   TEXT    NOT NULL,
    author_email  TEXT    NOT NULL,
    committed_at  BIGINT,
    url           TEXT    NOT NULL,
    repository    TEXT    NOT NULL,
    added         TEXT    NOT NULL,
    removed       TEXT    NOT NULL,
    modified      TEXT    NOT NULL,
    analysis      TEXT,
    risk_score    BIGINT,
    risk_level    TEXT,
    analyzed_at   BIGINT,
    created_at    BIGINT  NOT NULL,
    UNIQUE (service_id, sha)
);

CREATE INDEX commits_by_service ON commits (service_id, id);

CREATE TABLE commit_branches (
    commit_id   TEXT    NOT NULL REFERENCES commits (id) ON DELETE CASCADE,
    branch      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (commit_id, branch)
);

CREATE INDEX commit_branches_by_branch ON commit_branches (branch, commit_id);

CREATE TABLE pull_requests (
    id            TEXT    PRIMARY KEY NOT NULL,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    repository    TEXT    NOT NULL,
    repository_key TEXT   NOT NULL,
    number        BIGINT  NOT NULL,
    title         TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    merged        BOOLEAN NOT NULL,
    merged_at     BIGINT,
    head_ref      TEXT    NOT NULL,
    head_sha      TEXT    NOT NULL,
    base_ref      TEXT    NOT NULL,
    base_sha      TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    author        TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    UNIQUE (tenant_id, repository_key, number)
);

CREATE TABLE forge_issues (
    id            TEXT    PRIMARY KEY NOT NULL,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    repository    TEXT    NOT NULL,
    repository_key TEXT   NOT NULL,
    number        BIGINT  NOT NULL,
    title         TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    labels        TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    UNIQUE (tenant_id, repository_key, number)
);

CREATE TABLE integrations (
    id               TEXT    PRIMARY KEY NOT NULL,
    tenant_id        TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    integration_type TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    is_active        BOOLEAN NOT NULL,
    token            BYTEA   NOT NULL,
    webhook_secret   BYTEA   NOT NULL,
    -- last characters of the secret, for the masked view (the secret itself is never returned)
    secret_hint      TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

CREATE INDEX integrations_by_tenant ON integrations (tenant_id, id);

-- Every inbound request that reached a receiver and got past the signature header check.
-- tenant_id is NULL when the request could not be attributed (e.g. unparsable on the shared URL);
-- dedupe_key is set only once a delivery was processed, so a failed one can be delivered again.
CREATE TABLE inbound_deliveries (
    id            TEXT    PRIMARY KEY NOT NULL,
    tenant_id     TEXT    REFERENCES tenants (id) ON DELETE CASCADE,
    source        TEXT    NOT NULL,
    targets       TEXT    NOT NULL,
    delivery_key  TEXT,
    dedupe_key    TEXT,
    event         TEXT    NOT NULL,
    action        TEXT,
    repository    TEXT,
    content_type  TEXT    NOT NULL,
    headers       TEXT    NOT NULL,
    body          BYTEA   NOT NULL,
    body_size     BIGINT  NOT NULL,
    verification  TEXT    NOT NULL,
    result        TEXT    NOT NULL,
    error         TEXT,
    summary       TEXT    NOT NULL,
    received_at   BIGINT  NOT NULL,
    duration_ms   BIGINT  NOT NULL,
    replays       BIGINT  NOT NULL,
    UNIQUE (source, tenant_id, dedupe_key)
);

CREATE INDEX inbound_deliveries_by_tenant ON inbound_deliveries (tenant_id, id);

CREATE TABLE experiments (
    id           TEXT    PRIMARY KEY NOT NULL,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key          TEXT    NOT NULL,
    -- lowercase key: links from pull request bodies match without regard to case
    key_lower    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    UNIQUE (tenant_id, key_lower)
);

CREATE INDEX experiments_by_tenant ON experiments (tenant_id, id);

CREATE TABLE experiment_activity (
    id             TEXT    PRIMARY KEY NOT NULL,
    experiment_id  TEXT    NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    kind           TEXT    NOT NULL,
    -- the pull request or issue the entry is about, e.g. `owner/repo#42`
    subject        TEXT    NOT NULL,
    repository     TEXT    NOT NULL,
    number         BIGINT  NOT NULL,
    title          TEXT    NOT NULL,
    url            TEXT    NOT NULL,
    occurred_at    BIGINT  NOT NULL,
    UNIQUE (experiment_id, kind, subject)
);

CREATE INDEX experiment_activity_by_experiment ON experiment_activity (experiment_id, occurred_at);

CREATE TABLE analysis_jobs (
    id           TEXT    PRIMARY KEY NOT NULL,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    service_id   TEXT    NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    commit_id    TEXT    NOT NULL REFERENCES commits (id) ON DELETE CASCADE,
    status       TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL,
    run_after    BIGINT  NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE INDEX analysis_jobs_due ON analysis_jobs (status, run_after);
CREATE INDEX analysis_jobs_by_commit ON analysis_jobs (commit_id);
