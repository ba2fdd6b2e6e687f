-- A delivery as the API shows it: in flight, its next attempt is the end of its lease. On
-- PostgreSQL the queue state lives in a table of its own (`delivery_queue`) and this view joins
-- it; on SQLite, whose updates have no row versions to save, it stays in `deliveries`.
CREATE VIEW delivery_view AS
SELECT id, tenant_id, endpoint_id, event_id, event_type, status, attempt_count, round_attempts,
    COALESCE(lease_until, next_attempt_at) AS next_attempt_at, last_status_code, last_error_kind,
    created_at, updated_at, completed_at
FROM deliveries;
