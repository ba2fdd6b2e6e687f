-- Lets the delivery worker find an endpoint's due deliveries directly, so endpoints at their
-- concurrency cap never make a claim walk the whole queue. Not partial on PostgreSQL: the claim
-- query keeps the planner off the queue-wide `deliveries_due` index on purpose (see the store).
CREATE INDEX deliveries_pending_by_endpoint ON deliveries (endpoint_id, next_attempt_at);
