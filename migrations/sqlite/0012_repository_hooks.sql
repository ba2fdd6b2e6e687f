-- Repository hooks are delivered by the outbound engine: they are rows of `endpoints` of kind
-- `repository_hook`, so they share the queue, leases, retries, SSRF guard and attempt history.
-- Their `secret` holds the sealed secret token (empty: none), `event_types` the hook events they
-- subscribe to (push, merge_request, note, issue, pipeline).

ALTER TABLE endpoints ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook';
-- Lowercased owner/name of the repository a hook belongs to.
ALTER TABLE endpoints ADD COLUMN repository_key TEXT;
-- `gitlab` or `original`.
ALTER TABLE endpoints ADD COLUMN payload_format TEXT;
-- A repository hook temporarily disabled after failures is not attempted before this time
-- (GitLab's backoff); its events are still queued.
ALTER TABLE endpoints ADD COLUMN disabled_until INTEGER;

CREATE INDEX endpoints_hooks_by_repository ON endpoints (tenant_id, repository_key, id)
    WHERE kind = 'repository_hook';
