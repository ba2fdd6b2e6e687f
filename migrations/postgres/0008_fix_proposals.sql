-- Fix proposals for incidents: reverts (their pull request opened at once) and AI fixes (opened
-- by a durable job once approved), with the state of their pull request.

CREATE TABLE fix_proposals (
    id                TEXT    PRIMARY KEY NOT NULL,
    tenant_id         TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    incident_id       TEXT    NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    service_id        TEXT    NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    fix_type          TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    commit_sha        TEXT,
    summary           TEXT    NOT NULL,
    patch             TEXT,
    confidence_score  BIGINT,
    risk_assessment   TEXT,
    repository        TEXT    NOT NULL,
    base_branch       TEXT    NOT NULL,
    head_branch       TEXT,
    pr_number         BIGINT,
    pr_url            TEXT,
    rejection_reason  TEXT,
    last_error        TEXT,
    -- the PR-creation job of an approved AI fix
    job_attempts      BIGINT  NOT NULL,
    job_run_after     BIGINT,
    job_lease_owner   TEXT,
    job_lease_until   BIGINT,
    pr_checked_at     BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

CREATE INDEX fix_proposals_by_tenant ON fix_proposals (tenant_id, id);
CREATE INDEX fix_proposals_by_pr ON fix_proposals (tenant_id, repository, pr_number);
CREATE INDEX fix_proposals_by_status ON fix_proposals (status, job_run_after);
